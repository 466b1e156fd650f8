//! The compact binary form of a key's state (version byte, flags, varints, zero-run-length
//! rings, f32 rates, scores in 1/16 nat), persisted per key. Every older version is still read.

use super::guard::quantize;
use super::{slot, KeyState, OpenInsight, GUARD_DAYS, MAX_WINDOWS, MINUTE_RING, RING_HOURS};

/// Version 3: 29 guard days (the guard's 7 and 28 of weekly recurrence), scores as 1/16-nat
/// integers, each day's largest burst and its minute. Version 2 added the sustained-rise
/// CUSUM. Versions 1 and 2 are still read: their 8 guard days are kept (scores rounded up to
/// 1/16 nat), without bursts, and version 1 with a CUSUM at zero.
pub(super) const STATE_VERSION: u8 = 3;

const LAST_MINUTE: u8 = 1;
const LAST_NONZERO: u8 = 2;
const COOL_UNTIL: u8 = 4;
const RING_HOUR: u8 = 8;
const EXPECTED: u8 = 16;
const INSIGHT: u8 = 32;
/// Version 2 and later.
const CUSUM: u8 = 64;

/// Why persisted key state could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateDecodeError {
    #[error("key state ends early")]
    Truncated,
    #[error("key state has unknown version {0}")]
    UnknownVersion(u8),
    #[error("key state is corrupt: {0}")]
    Corrupt(&'static str),
}

impl KeyState {
    /// The compact binary form, in the current version.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(512));
        w.u8(STATE_VERSION);
        let has_cusum = self.cusum > 0.0 && self.last_minute.is_some();
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        let flags = flag(self.last_minute.is_some(), LAST_MINUTE)
            | flag(self.last_nonzero.is_some(), LAST_NONZERO)
            | flag(self.cool_until.is_some(), COOL_UNTIL)
            | flag(self.ring_hour.is_some(), RING_HOUR)
            | flag(self.expected_day.is_some(), EXPECTED)
            | flag(self.insight.is_some(), INSIGHT)
            | flag(has_cusum, CUSUM);
        w.u8(flags);
        for v in [
            self.last_minute,
            self.last_nonzero,
            self.cool_until,
            self.ring_hour,
        ]
        .into_iter()
        .flatten()
        {
            w.zz(v);
        }
        self.encode_rings(&mut w);
        if let Some(day) = self.expected_day {
            w.zz(day);
            for v in self.expected {
                w.f32(v);
            }
        }
        self.encode_guard(&mut w);
        if let (true, Some(last)) = (has_cusum, self.last_minute) {
            w.f32(self.cusum);
            w.zz(last - self.cusum_start);
            w.var(u64::from(self.cusum_x));
            w.f32(self.cusum_m);
        }
        if let Some(ins) = &self.insight {
            w.zz(ins.start);
            w.zz(ins.detected - ins.start);
            w.zz(ins.last_hot - ins.start);
            w.var(u64::from(ins.cold));
            w.var(ins.total);
            w.var(ins.total_at_last_hot);
            w.var(ins.baseline_count);
        }
        w.0
    }

    /// The hourly ring oldest first, then the raw and cleaned minute rings.
    fn encode_rings(&self, w: &mut Writer) {
        if let Some(rh) = self.ring_hour {
            let ordered: Vec<u32> = (0..RING_HOURS as i64)
                .map(|k| {
                    self.ring
                        [(rh - RING_HOURS as i64 + 1 + k).rem_euclid(RING_HOURS as i64) as usize]
                })
                .collect();
            w.rle(&ordered);
        }
        if let Some(last) = self.last_minute {
            for ring in [&self.raw, &self.clean] {
                let ordered: Vec<u32> = (0..MINUTE_RING as i64)
                    .map(|k| ring[slot(last - MINUTE_RING as i64 + 1 + k)])
                    .collect();
                w.rle(&ordered);
            }
        }
    }

    /// The guard's day slots in use (a mask), the newest day, and per slot: its age in days,
    /// which parts it holds, then the windows' maxima (up to the last window any slot uses),
    /// the CUSUM maximum, the burst and its minute.
    fn encode_guard(&self, w: &mut Writer) {
        let mut mask = 0u64;
        let mut n_windows = 0usize;
        for (s, d) in self.guard_day.iter().enumerate() {
            if d.is_some() {
                mask |= 1 << s;
                let used = self.guard[s]
                    .iter()
                    .rposition(|&v| v != 0)
                    .map_or(0, |i| i + 1);
                n_windows = n_windows.max(used);
            }
        }
        w.var(mask);
        let Some(newest) = self.guard_day.iter().flatten().max().copied() else {
            return;
        };
        w.zz(newest);
        w.u8(n_windows as u8);
        for (s, d) in self.guard_day.iter().enumerate() {
            let Some(d) = d else { continue };
            w.var((newest - d) as u64);
            let parts = u8::from(self.guard[s].iter().any(|&v| v != 0))
                | u8::from(self.cusum_guard[s] != 0) << 1
                | u8::from(self.burst[s] != 0) << 2;
            w.u8(parts);
            if parts & 1 != 0 {
                for v in &self.guard[s][..n_windows] {
                    w.var(u64::from(*v));
                }
            }
            if parts & 2 != 0 {
                w.var(u64::from(self.cusum_guard[s]));
            }
            if parts & 4 != 0 {
                w.var(u64::from(self.burst[s]));
                w.var(u64::from(self.burst_at[s]));
            }
        }
    }

    /// Reads what [`Self::encode`] wrote, in any version; refuses anything else without
    /// panicking.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateDecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if !(1..=STATE_VERSION).contains(&version) {
            return Err(StateDecodeError::UnknownVersion(version));
        }
        let v2 = version >= 2;
        let flags = r.u8()?;
        if flags >> (if v2 { 7 } else { 6 }) != 0 {
            return Err(StateDecodeError::Corrupt("unknown flags"));
        }
        let mut s = KeyState::default();
        let opt = |bit: u8, r: &mut Reader<'_>| -> Result<Option<i64>, StateDecodeError> {
            if flags & bit != 0 {
                Ok(Some(r.zz()?))
            } else {
                Ok(None)
            }
        };
        s.last_minute = opt(LAST_MINUTE, &mut r)?;
        s.last_nonzero = opt(LAST_NONZERO, &mut r)?;
        s.cool_until = opt(COOL_UNTIL, &mut r)?;
        s.ring_hour = opt(RING_HOUR, &mut r)?;
        s.decode_rings(&mut r)?;
        if flags & EXPECTED != 0 {
            s.expected_day = Some(r.zz()?);
            for v in s.expected.iter_mut() {
                *v = r.f32()?;
            }
        }
        if version >= 3 {
            s.decode_guard(&mut r)?;
        } else {
            s.decode_legacy_guard(&mut r, v2)?;
        }
        if flags & CUSUM != 0 {
            s.decode_cusum(&mut r)?;
        }
        if flags & INSIGHT != 0 {
            s.insight = Some(decode_insight(&mut r)?);
        }
        if r.pos != bytes.len() {
            return Err(StateDecodeError::Corrupt("trailing bytes"));
        }
        Ok(s)
    }

    fn decode_rings(&mut self, r: &mut Reader<'_>) -> Result<(), StateDecodeError> {
        if let Some(rh) = self.ring_hour {
            let ordered = r.rle(RING_HOURS)?;
            for (k, v) in ordered.into_iter().enumerate() {
                self.ring[(rh - RING_HOURS as i64 + 1 + k as i64).rem_euclid(RING_HOURS as i64)
                    as usize] = v;
            }
        }
        if let Some(last) = self.last_minute {
            for which in 0..2 {
                let ordered = r.rle(MINUTE_RING)?;
                let ring = if which == 0 {
                    &mut self.raw
                } else {
                    &mut self.clean
                };
                for (k, v) in ordered.into_iter().enumerate() {
                    ring[slot(last - MINUTE_RING as i64 + 1 + k as i64)] = v;
                }
            }
        }
        Ok(())
    }

    fn decode_guard(&mut self, r: &mut Reader<'_>) -> Result<(), StateDecodeError> {
        let mask = r.var()?;
        if mask >> GUARD_DAYS != 0 {
            return Err(StateDecodeError::Corrupt("guard slots"));
        }
        if mask == 0 {
            return Ok(());
        }
        let newest = r.zz()?;
        let n_windows = r.u8()? as usize;
        if n_windows > MAX_WINDOWS {
            return Err(StateDecodeError::Corrupt("too many guard windows"));
        }
        for s in (0..GUARD_DAYS).filter(|s| mask & (1 << s) != 0) {
            let age = r.var()?;
            if age >= GUARD_DAYS as u64 {
                return Err(StateDecodeError::Corrupt("guard day"));
            }
            let day = newest - age as i64;
            if day.rem_euclid(GUARD_DAYS as i64) as usize != s {
                return Err(StateDecodeError::Corrupt("guard day in the wrong slot"));
            }
            self.guard_day[s] = Some(day);
            let parts = r.u8()?;
            if parts >> 3 != 0 {
                return Err(StateDecodeError::Corrupt("guard parts"));
            }
            if parts & 1 != 0 {
                for wi in 0..n_windows {
                    self.guard[s][wi] = r.u16()?;
                }
            }
            if parts & 2 != 0 {
                self.cusum_guard[s] = r.u16()?;
            }
            if parts & 4 != 0 {
                self.burst[s] = r.u16()?;
                self.burst_at[s] = r.u16()?;
            }
        }
        Ok(())
    }

    /// The guard of versions 1 and 2: 8 day slots, f32 window maxima, from version 2 the CUSUM
    /// maximum. Days go to their slot of today's ring.
    fn decode_legacy_guard(
        &mut self,
        r: &mut Reader<'_>,
        v2: bool,
    ) -> Result<(), StateDecodeError> {
        const LEGACY_DAYS: usize = 8;
        let mask = r.u8()?;
        let n_windows = r.u8()? as usize;
        if n_windows > MAX_WINDOWS {
            return Err(StateDecodeError::Corrupt("too many guard windows"));
        }
        for bit in (0..LEGACY_DAYS).filter(|b| mask & (1 << b) != 0) {
            let day = r.zz()?;
            if day.rem_euclid(LEGACY_DAYS as i64) as usize != bit {
                return Err(StateDecodeError::Corrupt("guard day in the wrong slot"));
            }
            let s = day.rem_euclid(GUARD_DAYS as i64) as usize;
            self.guard_day[s] = Some(day);
            for wi in 0..n_windows {
                self.guard[s][wi] = quantize(f64::from(r.f32()?).max(0.0));
            }
            if v2 {
                self.cusum_guard[s] = r.u16()?;
            }
        }
        Ok(())
    }

    fn decode_cusum(&mut self, r: &mut Reader<'_>) -> Result<(), StateDecodeError> {
        let last = self
            .last_minute
            .ok_or(StateDecodeError::Corrupt("cusum without a minute"))?;
        let c = r.f32()?;
        if c <= 0.0 {
            return Err(StateDecodeError::Corrupt("cusum not positive"));
        }
        self.cusum = c;
        self.cusum_start = last.saturating_sub(r.zz()?);
        self.cusum_x =
            u32::try_from(r.var()?).map_err(|_| StateDecodeError::Corrupt("cusum count"))?;
        self.cusum_m = r.f32()?;
        Ok(())
    }
}

fn decode_insight(r: &mut Reader<'_>) -> Result<OpenInsight, StateDecodeError> {
    let start = r.zz()?;
    let detected = start.saturating_add(r.zz()?);
    let last_hot = start.saturating_add(r.zz()?);
    let cold = u32::try_from(r.var()?).map_err(|_| StateDecodeError::Corrupt("cold"))?;
    Ok(OpenInsight {
        start,
        detected,
        last_hot,
        cold,
        total: r.var()?,
        total_at_last_hot: r.var()?,
        baseline_count: r.var()?,
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn var(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    fn zz(&mut self, v: i64) {
        self.var(((v << 1) ^ (v >> 63)) as u64);
    }
    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// Non-zero values as varints; a run of zeros as `0, run length`.
    fn rle(&mut self, values: &[u32]) {
        let mut i = 0;
        while i < values.len() {
            if values[i] == 0 {
                let run = values[i..].iter().take_while(|&&v| v == 0).count();
                self.var(0);
                self.var(run as u64);
                i += run;
            } else {
                self.var(u64::from(values[i]));
                i += 1;
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, StateDecodeError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or(StateDecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }
    fn var(&mut self) -> Result<u64, StateDecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(StateDecodeError::Corrupt("varint too long"))
    }
    /// A signed minute, hour or day; anything beyond ±2^40 (far past year 9999 in minutes) is
    /// refused so that later arithmetic cannot overflow.
    fn zz(&mut self) -> Result<i64, StateDecodeError> {
        let v = self.var()?;
        let v = (v >> 1) as i64 ^ -((v & 1) as i64);
        if !(-(1i64 << 40)..=(1i64 << 40)).contains(&v) {
            return Err(StateDecodeError::Corrupt("time out of range"));
        }
        Ok(v)
    }
    fn u16(&mut self) -> Result<u16, StateDecodeError> {
        u16::try_from(self.var()?).map_err(|_| StateDecodeError::Corrupt("score out of range"))
    }
    fn f32(&mut self) -> Result<f32, StateDecodeError> {
        let end = self.pos.checked_add(4).ok_or(StateDecodeError::Truncated)?;
        let b = self
            .bytes
            .get(self.pos..end)
            .ok_or(StateDecodeError::Truncated)?;
        self.pos = end;
        let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if !v.is_finite() {
            return Err(StateDecodeError::Corrupt("non-finite rate"));
        }
        Ok(v)
    }
    fn rle(&mut self, n: usize) -> Result<Vec<u32>, StateDecodeError> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let v = self.var()?;
            if v == 0 {
                let run = self.var()?;
                if run == 0 || run > (n - out.len()) as u64 {
                    return Err(StateDecodeError::Corrupt("bad zero run"));
                }
                out.resize(out.len() + run as usize, 0);
            } else {
                out.push(
                    u32::try_from(v).map_err(|_| StateDecodeError::Corrupt("count too large"))?,
                );
            }
        }
        Ok(out)
    }
}
