//! Shared data and shared queues (`proxy_get_shared_data`, `proxy_*_shared_queue`).
//!
//! Envoy shares these between every VM with the same `vm_id` on a host; here there is one VM,
//! so they live in the plugin. Queue wake-ups (`proxy_on_queue_ready`) are not delivered.

use std::collections::{HashMap, VecDeque};

/// Why a shared-data write was refused.
pub(crate) struct CasMismatch;

#[derive(Default)]
pub(crate) struct SharedData {
    values: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    next_cas: u32,
    queues: Vec<(Vec<u8>, VecDeque<Vec<u8>>)>,
}

impl SharedData {
    /// The value and its compare-and-swap token.
    pub(crate) fn get(&self, key: &[u8]) -> Option<(&[u8], u32)> {
        self.values.get(key).map(|(v, cas)| (&v[..], *cas))
    }

    /// Stores `value` unless `cas` is non-zero and differs from the current token.
    pub(crate) fn set(&mut self, key: &[u8], value: &[u8], cas: u32) -> Result<(), CasMismatch> {
        if cas != 0 {
            match self.values.get(key) {
                Some((_, current)) if *current == cas => {}
                _ => return Err(CasMismatch),
            }
        }
        // Tokens start at 1: the SDK reads a 0 token as "no token".
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.values
            .insert(key.to_vec(), (value.to_vec(), self.next_cas));
        Ok(())
    }

    /// Registers (or finds) the queue `name` and answers its id.
    pub(crate) fn register_queue(&mut self, name: &[u8]) -> u32 {
        let index = match self.queues.iter().position(|(n, _)| n == name) {
            Some(index) => index,
            None => {
                self.queues.push((name.to_vec(), VecDeque::new()));
                self.queues.len() - 1
            }
        };
        u32::try_from(index + 1).unwrap_or(u32::MAX)
    }

    pub(crate) fn resolve_queue(&self, name: &[u8]) -> Option<u32> {
        let index = self.queues.iter().position(|(n, _)| n == name)?;
        u32::try_from(index + 1).ok()
    }

    fn queue(&mut self, id: u32) -> Option<&mut VecDeque<Vec<u8>>> {
        let index = (id as usize).checked_sub(1)?;
        self.queues.get_mut(index).map(|(_, q)| q)
    }

    /// `None` when there is no such queue.
    pub(crate) fn enqueue(&mut self, id: u32, value: &[u8]) -> Option<()> {
        self.queue(id)?.push_back(value.to_vec());
        Some(())
    }

    /// `None` when there is no such queue, `Some(None)` when it is empty.
    pub(crate) fn dequeue(&mut self, id: u32) -> Option<Option<Vec<u8>>> {
        Some(self.queue(id)?.pop_front())
    }
}
