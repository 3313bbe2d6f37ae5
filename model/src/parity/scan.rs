//! The selective scan against the official CUDA kernel's fixtures (`selective_scan_*`).

use crate::fixtures::{
    rel_l2, seq_to_ours, states_to_ours, tensor, values, CheckError, Comparison, Fixture, Tolerance,
};
use crate::ops::scan::{selective_scan, ScanInput, ScanOptions, ScanOrder};
use burn::tensor::{Device, Tensor};

pub(super) fn check_selective_scan(
    f: &Fixture,
    device: &Device,
) -> Result<Vec<Comparison>, CheckError> {
    let u = f.shaped("u", 3)?;
    let bm = f.shaped("B", 4)?;
    let a = f.shaped("A", 2)?;
    let (batch, kd, len) = (u.shape[0], u.shape[1], u.shape[2]);
    let (k, n) = (bm.shape[1], bm.shape[2]);
    if k == 0 || kd % k != 0 || bm.shape != [batch, k, n, len] || a.shape != [kd, n] {
        return Err(format!(
            "inconsistent shapes: u {:?}, B {:?}, A {:?}",
            u.shape, bm.shape, a.shape
        )
        .into());
    }
    let d = kd / k;
    let seq = |name: &str| -> Result<Vec<f64>, String> {
        let t = f.get(name)?;
        if t.shape != [batch, kd, len] {
            return Err(format!(
                "'{name}' has shape {:?}; expected {:?}",
                t.shape,
                [batch, kd, len]
            ));
        }
        Ok(seq_to_ours(&t.data, batch, k, d, len))
    };
    let st = |name: &str| -> Result<Vec<f64>, String> {
        let t = f.get(name)?;
        if t.shape != [batch, k, n, len] {
            return Err(format!(
                "'{name}' has shape {:?}; expected {:?}",
                t.shape,
                [batch, k, n, len]
            ));
        }
        Ok(states_to_ours(&t.data, batch, k, n, len))
    };
    let vecn = |name: &str, want: usize| -> Result<Vec<f64>, String> {
        let t = f.get(name)?;
        if t.data.len() != want {
            return Err(format!(
                "'{name}' has {} values; expected {want}",
                t.data.len()
            ));
        }
        Ok(t.data.clone())
    };
    let ad = device.clone().autodiff();
    let s4 = [batch, k, len, d];
    let n4 = [batch, k, len, n];
    let u_t = tensor(seq("u")?, s4, &ad).require_grad();
    let delta_t = tensor(seq("delta")?, s4, &ad).require_grad();
    let a_t = tensor(vecn("A", kd * n)?, [kd, n], &ad).require_grad();
    let b_t = tensor(st("B")?, n4, &ad).require_grad();
    let c_t = tensor(st("C")?, n4, &ad).require_grad();
    let d_t = tensor(vecn("D", kd)?, [kd], &ad).require_grad();
    let bias_t = tensor(vecn("delta_bias", kd)?, [kd], &ad).require_grad();
    let dy = tensor(seq("dy")?, s4, &ad);
    let y = selective_scan(
        ScanInput {
            u: u_t.clone(),
            delta: delta_t.clone(),
            a: a_t.clone(),
            b: b_t.clone(),
            c: c_t.clone(),
            d: d_t.clone(),
            bias: bias_t.clone(),
        },
        ScanOrder::Sequential,
        ScanOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    let grads = (y.clone() * dy).sum().backward();
    let mut out = Vec::new();
    let mut cmp = |name: &str, ours: Vec<f64>, reference: Vec<f64>, tol: f64| {
        out.push(Comparison {
            name: name.to_string(),
            error: rel_l2(&ours, &reference),
            tolerance: Tolerance::Relative(tol),
        });
    };
    fn grad<const D: usize>(
        t: &Tensor<D>,
        grads: &burn::tensor::Gradients,
        name: &str,
    ) -> Result<Vec<f64>, String> {
        t.grad(grads)
            .ok_or_else(|| format!("no gradient reached {name}"))
            .and_then(values)
    }
    cmp("y", values(y.inner())?, seq("y")?, 1e-5);
    cmp("du", grad(&u_t, &grads, "u")?, seq("du")?, 1e-4);
    cmp(
        "ddelta",
        grad(&delta_t, &grads, "delta")?,
        seq("ddelta")?,
        1e-4,
    );
    cmp("dB", grad(&b_t, &grads, "B")?, st("dB")?, 1e-4);
    cmp("dC", grad(&c_t, &grads, "C")?, st("dC")?, 1e-4);
    cmp("dA", grad(&a_t, &grads, "A")?, vecn("dA", kd * n)?, 1e-4);
    cmp("dD", grad(&d_t, &grads, "D")?, vecn("dD", kd)?, 1e-4);
    cmp(
        "ddelta_bias",
        grad(&bias_t, &grads, "delta_bias")?,
        vecn("ddelta_bias", kd)?,
        1e-4,
    );
    Ok(out)
}
