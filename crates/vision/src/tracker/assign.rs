//! Optimal assignment (the Hungarian algorithm, in the potentials form for
//! rectangular matrices, O(n² m)).
//!
//! Why optimal rather than greedy-by-IoU: with two people walking side by
//! side or crossing, greedy takes the single best pair first and can leave
//! the other track with a worse (or no) match, swapping ids; the optimal
//! assignment maximises total IoU. Matrices here are a few dozen wide, so
//! the cubic cost is microseconds.

/// For each row, the column assigned to it, minimising the total cost.
/// Every row gets a column when rows ≤ columns, and vice versa.
pub(crate) fn hungarian(cost: &[Vec<f64>]) -> Vec<Option<usize>> {
    let n = cost.len();
    let m = cost.first().map_or(0, Vec::len);
    if n == 0 || m == 0 {
        return vec![None; n];
    }
    if n > m {
        // Solve the transpose so that rows ≤ columns.
        let t: Vec<Vec<f64>> = (0..m)
            .map(|j| (0..n).map(|i| cost[i][j]).collect())
            .collect();
        let cols = hungarian(&t);
        let mut rows = vec![None; n];
        for (j, i) in cols.into_iter().enumerate() {
            if let Some(i) = i {
                rows[i] = Some(j);
            }
        }
        return rows;
    }
    // 1-based arrays as in the textbook formulation; index 0 is a sentinel.
    let inf = f64::INFINITY;
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; m + 1];
    let mut p = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![inf; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = inf;
            let mut j1 = 0;
            for j in 1..=m {
                if !used[j] {
                    let cur = cost[i0 - 1][j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut rows = vec![None; n];
    for j in 1..=m {
        if p[j] != 0 {
            rows[p[j] - 1] = Some(j - 1);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(cost: &[Vec<f64>], a: &[Option<usize>]) -> f64 {
        a.iter()
            .enumerate()
            .filter_map(|(i, j)| j.map(|j| cost[i][j]))
            .sum()
    }

    #[test]
    fn beats_greedy() {
        // Greedy takes (0,0)=0.1 first and is left with (1,1)=0.9: 1.0.
        // Optimal is (0,1)+(1,0) = 0.2+0.3 = 0.5.
        let c = vec![vec![0.1, 0.2], vec![0.3, 0.9]];
        let a = hungarian(&c);
        assert_eq!(a, vec![Some(1), Some(0)]);
    }

    #[test]
    fn rectangular_both_ways() {
        let c = vec![vec![0.5, 0.1, 0.9], vec![0.2, 0.8, 0.7]];
        let a = hungarian(&c);
        assert_eq!(a, vec![Some(1), Some(0)]);
        let t: Vec<Vec<f64>> = (0..3).map(|j| (0..2).map(|i| c[i][j]).collect()).collect();
        let b = hungarian(&t);
        assert_eq!(b, vec![Some(1), Some(0), None]);
        assert!((total(&t, &b) - 0.3).abs() < 1e-12);
        assert!(hungarian(&[]).is_empty());
    }

    #[test]
    fn matches_brute_force_on_small_matrices() {
        // A deterministic pseudo-random sweep against all permutations.
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % 1000) as f64 / 1000.0
        };
        for _ in 0..50 {
            let c: Vec<Vec<f64>> = (0..4).map(|_| (0..4).map(|_| rnd()).collect()).collect();
            let a = hungarian(&c);
            let best = permutations(4)
                .into_iter()
                .map(|p| p.iter().enumerate().map(|(i, &j)| c[i][j]).sum::<f64>())
                .fold(f64::INFINITY, f64::min);
            assert!((total(&c, &a) - best).abs() < 1e-9);
        }
    }

    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for p in permutations(n - 1) {
            for k in 0..=p.len() {
                let mut q = p.clone();
                q.insert(k, n - 1);
                out.push(q);
            }
        }
        out
    }
}
