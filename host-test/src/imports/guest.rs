//! Bounds-checked access to guest memory, and handing bytes to the guest.

use std::ops::Range;

use wasmtime::Caller;

use crate::abi::status;
use crate::state::State;

/// Guest memory and host state, borrowed together; `None` before the module's memory is known.
pub(super) fn split<'a>(
    caller: &'a mut Caller<'_, State>,
) -> Option<(&'a mut [u8], &'a mut State)> {
    let memory = caller.data().memory?;
    Some(memory.data_and_store_mut(caller))
}

fn range(ptr: u32, len: usize) -> Option<Range<usize>> {
    let start = ptr as usize;
    Some(start..start.checked_add(len)?)
}

/// `len` bytes at `ptr`, or `None` if any of them is outside memory.
pub(super) fn read(mem: &[u8], ptr: u32, len: u32) -> Option<&[u8]> {
    mem.get(range(ptr, len as usize)?)
}

/// Copies `bytes` to `ptr`; false if they do not fit.
#[must_use]
pub(super) fn write(mem: &mut [u8], ptr: u32, bytes: &[u8]) -> bool {
    match range(ptr, bytes.len()).and_then(|r| mem.get_mut(r)) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

#[must_use]
pub(super) fn write_u32(mem: &mut [u8], ptr: u32, value: u32) -> bool {
    write(mem, ptr, &value.to_le_bytes())
}

#[must_use]
pub(super) fn write_u64(mem: &mut [u8], ptr: u32, value: u64) -> bool {
    write(mem, ptr, &value.to_le_bytes())
}

/// Answers `state.scratch` through a `(**ret_ptr, *ret_len)` pair, as cpp-host's
/// `copyToPointerSize`: the guest allocator provides the space, and an empty value is written
/// as pointer 0, length 0 without allocating.
///
/// A trap inside the guest allocator is returned as the host call's error, trapping the
/// caller too.
pub(super) fn return_scratch(
    caller: &mut Caller<'_, State>,
    ptr_ptr: u32,
    size_ptr: u32,
) -> wasmtime::Result<u32> {
    let Some(memory) = caller.data().memory else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let Ok(len) = u32::try_from(caller.data().scratch.len()) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let addr = if len == 0 {
        0
    } else {
        let Some(alloc) = caller.data().alloc.clone() else {
            return Ok(status::INVALID_MEMORY_ACCESS);
        };
        let addr = alloc.call(&mut *caller, len)?;
        if addr == 0 {
            return Ok(status::INVALID_MEMORY_ACCESS);
        }
        addr
    };
    // Borrowed again after the call: the allocator may have grown memory.
    let (mem, state) = memory.data_and_store_mut(&mut *caller);
    let copied = len == 0 || write(mem, addr, &state.scratch);
    if copied && write_u32(mem, ptr_ptr, addr) && write_u32(mem, size_ptr, len) {
        Ok(status::OK)
    } else {
        Ok(status::INVALID_MEMORY_ACCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_are_bounds_checked() {
        let mut mem = vec![0u8; 16];
        assert_eq!(read(&mem, 12, 4), Some(&[0u8; 4][..]));
        assert_eq!(read(&mem, 13, 4), None);
        assert_eq!(read(&mem, u32::MAX, u32::MAX), None);
        assert_eq!(read(&mem, 16, 0), Some(&[][..]));
        assert!(write_u32(&mut mem, 12, 7));
        assert!(!write_u32(&mut mem, 13, 7));
        assert!(!write_u64(&mut mem, u32::MAX, 7));
    }
}
