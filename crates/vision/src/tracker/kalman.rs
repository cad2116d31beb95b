//! The constant-velocity Kalman filter of SORT/ByteTrack on
//! (cx, cy, aspect, h), aspect being width over height. Noise scales with the
//! box height, so the filter behaves the same in normalised coordinates as
//! in pixels. One step per analysed frame.

// Small fixed-size matrix algebra reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

use crate::geometry::BBox;

const STD_POSITION: f64 = 1.0 / 20.0;
const STD_VELOCITY: f64 = 1.0 / 160.0;

type M8 = [[f64; 8]; 8];

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Kalman {
    mean: [f64; 8],
    cov: M8,
}

fn measure(b: &BBox) -> [f64; 4] {
    let w = f64::from(b[2] - b[0]).max(1e-6);
    let h = f64::from(b[3] - b[1]).max(1e-6);
    [
        f64::from(b[0]) + w / 2.0,
        f64::from(b[1]) + h / 2.0,
        w / h,
        h,
    ]
}

impl Kalman {
    pub(crate) fn new(b: &BBox) -> Self {
        let z = measure(b);
        let h = z[3];
        let std = [
            2.0 * STD_POSITION * h,
            2.0 * STD_POSITION * h,
            1e-2,
            2.0 * STD_POSITION * h,
            10.0 * STD_VELOCITY * h,
            10.0 * STD_VELOCITY * h,
            1e-5,
            10.0 * STD_VELOCITY * h,
        ];
        let mut cov = [[0.0; 8]; 8];
        for i in 0..8 {
            cov[i][i] = std[i] * std[i];
        }
        let mut mean = [0.0; 8];
        mean[..4].copy_from_slice(&z);
        Kalman { mean, cov }
    }

    /// The box the state stands for.
    pub(crate) fn bbox(&self) -> BBox {
        let [cx, cy, a, h] = [self.mean[0], self.mean[1], self.mean[2], self.mean[3]];
        let w = a * h;
        [
            (cx - w / 2.0) as f32,
            (cy - h / 2.0) as f32,
            (cx + w / 2.0) as f32,
            (cy + h / 2.0) as f32,
        ]
    }

    /// One step ahead. `freeze_height` stops the height's velocity (ByteTrack
    /// does this for tracks that were not matched last frame).
    pub(crate) fn predict(&mut self, freeze_height: bool) {
        if freeze_height {
            self.mean[7] = 0.0;
        }
        let h = self.mean[3];
        let q = [
            STD_POSITION * h,
            STD_POSITION * h,
            1e-2,
            STD_POSITION * h,
            STD_VELOCITY * h,
            STD_VELOCITY * h,
            1e-5,
            STD_VELOCITY * h,
        ];
        for i in 0..4 {
            self.mean[i] += self.mean[i + 4];
        }
        // P = F P F^T + Q with F = [[I, I], [0, I]].
        let p = self.cov;
        let mut fp = p;
        for i in 0..4 {
            for j in 0..8 {
                fp[i][j] = p[i][j] + p[i + 4][j];
            }
        }
        let mut n = fp;
        for i in 0..8 {
            for j in 0..4 {
                n[i][j] = fp[i][j] + fp[i][j + 4];
            }
        }
        for i in 0..8 {
            n[i][i] += q[i] * q[i];
        }
        self.cov = n;
    }

    /// Corrects the state with a measured box.
    pub(crate) fn update(&mut self, b: &BBox) {
        let z = measure(b);
        let h = self.mean[3];
        let r = [STD_POSITION * h, STD_POSITION * h, 1e-1, STD_POSITION * h];
        // S = H P H^T + R: the top-left 4x4 block of P.
        let mut s = [[0.0; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                s[i][j] = self.cov[i][j];
            }
            s[i][i] += r[i] * r[i];
        }
        let Some(si) = invert4(&s) else {
            // A degenerate covariance: restart from the measurement rather
            // than propagate NaNs.
            *self = Kalman::new(b);
            return;
        };
        // K = P H^T S^-1: (8x4) = P[:, 0..4] * S^-1.
        let mut k = [[0.0; 4]; 8];
        for i in 0..8 {
            for j in 0..4 {
                k[i][j] = (0..4).map(|l| self.cov[i][l] * si[l][j]).sum();
            }
        }
        let innov: [f64; 4] = std::array::from_fn(|i| z[i] - self.mean[i]);
        for i in 0..8 {
            self.mean[i] += (0..4).map(|j| k[i][j] * innov[j]).sum::<f64>();
        }
        // P = P - K H P = P - K * P[0..4, :].
        let p = self.cov;
        for i in 0..8 {
            for j in 0..8 {
                self.cov[i][j] = p[i][j] - (0..4).map(|l| k[i][l] * p[l][j]).sum::<f64>();
            }
        }
    }
}

/// Gauss-Jordan with partial pivoting; `None` when singular.
fn invert4(m: &[[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    let mut a = *m;
    let mut inv = [[0.0; 4]; 4];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for col in 0..4 {
        let pivot = (col..4).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let d = a[col][col];
        for j in 0..4 {
            a[col][j] /= d;
            inv[col][j] /= d;
        }
        for r in 0..4 {
            if r != col {
                let f = a[r][col];
                for j in 0..4 {
                    a[r][j] -= f * a[col][j];
                    inv[r][j] -= f * inv[col][j];
                }
            }
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_constant_velocity() {
        let mut k = Kalman::new(&[0.1, 0.4, 0.15, 0.6]);
        for step in 1..=10 {
            k.predict(false);
            let dx = 0.02 * step as f32;
            k.update(&[0.1 + dx, 0.4, 0.15 + dx, 0.6]);
        }
        k.predict(false);
        let b = k.bbox();
        // Next position is at dx = 0.22; the filter should be close.
        assert!((b[0] - 0.32).abs() < 0.01, "{b:?}");
        assert!((b[3] - 0.6).abs() < 0.01, "{b:?}");
    }

    #[test]
    fn inverse_is_inverse() {
        let m = [
            [4.0, 1.0, 0.0, 0.5],
            [1.0, 3.0, 0.2, 0.0],
            [0.0, 0.2, 2.0, 0.1],
            [0.5, 0.0, 0.1, 1.0],
        ];
        let i = invert4(&m).unwrap();
        for r in 0..4 {
            for c in 0..4 {
                let v: f64 = (0..4).map(|l| m[r][l] * i[l][c]).sum();
                assert!((v - if r == c { 1.0 } else { 0.0 }).abs() < 1e-9);
            }
        }
        assert!(invert4(&[[0.0; 4]; 4]).is_none());
    }
}
