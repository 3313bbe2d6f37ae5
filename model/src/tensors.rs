//! Host ↔ device helpers for f64 test and check data (uploaded as f32).

use burn::tensor::{Device, Tensor, TensorData};

/// Upload f64 values as an f32 tensor.
pub fn tensor<const D: usize>(data: Vec<f64>, shape: [usize; D], device: &Device) -> Tensor<D> {
    let v: Vec<f32> = data.into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, shape.to_vec()), device)
}

/// Read a tensor back as f64.
pub fn values<const D: usize>(t: Tensor<D>) -> Result<Vec<f64>, String> {
    as_f64(t.into_data())
}

/// [`values`] without blocking (the browser).
pub async fn values_async<const D: usize>(t: Tensor<D>) -> Result<Vec<f64>, String> {
    as_f64(
        t.into_data_async()
            .await
            .map_err(|e| format!("read back: {e:?}"))?,
    )
}

fn as_f64(data: TensorData) -> Result<Vec<f64>, String> {
    let v: Vec<f32> = data
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("read back: {e:?}"))?;
    Ok(v.into_iter().map(|x| x as f64).collect())
}
