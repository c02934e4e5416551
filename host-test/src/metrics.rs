//! Metrics a module defines, kept across requests like Envoy's stats.

/// A proxy-wasm metric type (`proxy_define_metric`'s first argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// 0: only grows.
    Counter,
    /// 1: set, or moved up and down.
    Gauge,
    /// 2: records samples.
    Histogram,
}

impl MetricType {
    fn from_abi(kind: u32) -> Option<Self> {
        Some(match kind {
            0 => Self::Counter,
            1 => Self::Gauge,
            2 => Self::Histogram,
            _ => return None,
        })
    }
}

/// One metric, as [`crate::Plugin::metrics`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metric {
    /// The name the module defined (Envoy prefixes its stat with `wasmcustom.`; this does not).
    pub name: String,
    /// Its type.
    pub kind: MetricType,
    /// Counter: the total. Gauge: the current value. Histogram: the sum of recorded samples.
    pub value: u64,
    /// Histogram: how many samples were recorded. Others: 0.
    pub samples: u64,
}

/// Status answers; see `status` in `abi.rs` for why these and no others.
pub(crate) enum MetricError {
    NotFound,
    BadArgument,
}

#[derive(Default)]
pub(crate) struct Metrics {
    all: Vec<Metric>,
    /// Index into `all` of each id handed out (id = position + 1).
    ids: Vec<usize>,
}

impl Metrics {
    /// `proxy_define_metric`: every definition gets a new id, as in Envoy, but defining a
    /// name and type again names the same stat, so both ids move one value.
    pub(crate) fn define(&mut self, kind: u32, name: &[u8]) -> Result<u32, MetricError> {
        let kind = MetricType::from_abi(kind).ok_or(MetricError::BadArgument)?;
        let name = String::from_utf8_lossy(name);
        let index = match self
            .all
            .iter()
            .position(|m| m.kind == kind && m.name == name)
        {
            Some(index) => index,
            None => {
                self.all.push(Metric {
                    name: name.into_owned(),
                    kind,
                    value: 0,
                    samples: 0,
                });
                self.all.len() - 1
            }
        };
        self.ids.push(index);
        // Ids start at 1 so that a module treating 0 as "undefined" still works.
        u32::try_from(self.ids.len()).map_err(|_| MetricError::BadArgument)
    }

    fn by_id(&mut self, id: u32) -> Result<&mut Metric, MetricError> {
        let slot = (id as usize).checked_sub(1).ok_or(MetricError::NotFound)?;
        let index = *self.ids.get(slot).ok_or(MetricError::NotFound)?;
        self.all.get_mut(index).ok_or(MetricError::NotFound)
    }

    /// Envoy's `incrementMetric`: counters take only positive offsets; gauges move both ways;
    /// histograms refuse.
    pub(crate) fn increment(&mut self, id: u32, offset: i64) -> Result<(), MetricError> {
        let metric = self.by_id(id)?;
        match metric.kind {
            MetricType::Counter if offset > 0 => {
                metric.value = metric.value.saturating_add(offset.unsigned_abs());
            }
            MetricType::Gauge if offset >= 0 => {
                metric.value = metric.value.saturating_add(offset.unsigned_abs());
            }
            MetricType::Gauge => metric.value = metric.value.saturating_sub(offset.unsigned_abs()),
            MetricType::Counter | MetricType::Histogram => return Err(MetricError::BadArgument),
        }
        Ok(())
    }

    /// Envoy's `recordMetric`: adds to a counter, sets a gauge, records a histogram sample.
    pub(crate) fn record(&mut self, id: u32, value: u64) -> Result<(), MetricError> {
        let metric = self.by_id(id)?;
        match metric.kind {
            MetricType::Counter => metric.value = metric.value.saturating_add(value),
            MetricType::Gauge => metric.value = value,
            MetricType::Histogram => {
                metric.value = metric.value.saturating_add(value);
                metric.samples = metric.samples.saturating_add(1);
            }
        }
        Ok(())
    }

    /// Envoy's `getMetric`: histograms cannot be read back.
    pub(crate) fn get(&mut self, id: u32) -> Result<u64, MetricError> {
        let metric = self.by_id(id)?;
        match metric.kind {
            MetricType::Counter | MetricType::Gauge => Ok(metric.value),
            MetricType::Histogram => Err(MetricError::BadArgument),
        }
    }

    pub(crate) fn all(&self) -> &[Metric] {
        &self.all
    }
}
