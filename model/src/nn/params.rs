//! Building modules from named weights (official checkpoints, fixtures, or a random source)
//! and listing their parameters by name.

use burn::module::Param;
use burn::tensor::{Device, Gradients, Tensor, TensorData};

/// Where a module's weights come from: given a full parameter name and its shape, the values
/// (row-major f32).
pub trait WeightSource {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String>;

    /// Buffers (running statistics); by default from the same place as parameters.
    fn buffer(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        self.get(name, shape)
    }
}

/// Random normal weights (std 0.02, seeded) for every parameter: for counting parameters
/// and for tests. Networks' official initialisation is a separate concern.
pub struct RandomWeights {
    pub state: u64,
}

impl WeightSource for RandomWeights {
    fn get(&mut self, _name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let n: usize = shape.iter().product();
        let mut uniform = || {
            self.state = self
                .state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        Ok((0..n)
            .map(|_| {
                // Box–Muller.
                let (a, b) = (uniform(), uniform());
                (0.02 * (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
            })
            .collect())
    }
}

/// Builds parameters on one device from a [`WeightSource`], under a name prefix.
pub struct Loader<'a> {
    pub source: &'a mut dyn WeightSource,
    pub device: Device,
    prefix: String,
}

impl<'a> Loader<'a> {
    pub fn new(source: &'a mut dyn WeightSource, device: Device, prefix: &str) -> Self {
        Self {
            source,
            device,
            prefix: prefix.to_string(),
        }
    }

    /// The same source and device under `prefix.name`.
    pub fn sub(&mut self, name: &str) -> Loader<'_> {
        Loader {
            source: &mut *self.source,
            device: self.device.clone(),
            prefix: join(&self.prefix, name),
        }
    }

    /// A non-trainable buffer (e.g. BatchNorm running statistics), `buffer.`-named in fixtures.
    pub fn buffer<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>, String> {
        let full = join(&self.prefix, name);
        let values = self.source.buffer(&full, &shape)?;
        Ok(Tensor::from_data(
            TensorData::new(values, shape.to_vec()),
            &self.device,
        ))
    }

    pub fn param<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Param<Tensor<D>>, String> {
        let full = join(&self.prefix, name);
        let values = self.source.get(&full, &shape)?;
        let n: usize = shape.iter().product();
        if values.len() != n {
            return Err(format!(
                "{full}: {} values for shape {shape:?}",
                values.len()
            ));
        }
        let t = Tensor::from_data(TensorData::new(values, shape.to_vec()), &self.device);
        Ok(Param::from_tensor(if self.device.is_autodiff() {
            t.require_grad()
        } else {
            t
        }))
    }
}

pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A parameter of any rank, for listing.
#[derive(Debug, Clone)]
pub enum AnyParam {
    R1(Param<Tensor<1>>),
    R2(Param<Tensor<2>>),
    R3(Param<Tensor<3>>),
    R4(Param<Tensor<4>>),
}

impl AnyParam {
    pub fn numel(&self) -> usize {
        match self {
            AnyParam::R1(p) => p.val().shape().num_elements(),
            AnyParam::R2(p) => p.val().shape().num_elements(),
            AnyParam::R3(p) => p.val().shape().num_elements(),
            AnyParam::R4(p) => p.val().shape().num_elements(),
        }
    }

    /// The gradient in `grads`, flattened, if one reached this parameter.
    pub fn grad(&self, grads: &Gradients) -> Option<Tensor<1>> {
        match self {
            AnyParam::R1(p) => p.val().grad(grads),
            AnyParam::R2(p) => p.val().grad(grads).map(|g| g.flatten(0, 1)),
            AnyParam::R3(p) => p.val().grad(grads).map(|g| g.flatten(0, 2)),
            AnyParam::R4(p) => p.val().grad(grads).map(|g| g.flatten(0, 3)),
        }
    }
}

macro_rules! any_param_from {
    ($($r:ident $d:literal),*) => {$(
        impl From<&Param<Tensor<$d>>> for AnyParam {
            fn from(p: &Param<Tensor<$d>>) -> Self {
                AnyParam::$r(p.clone())
            }
        }
    )*};
}
any_param_from!(R1 1, R2 2, R3 3, R4 4);

/// A parameter of any rank, borrowed mutably (for optimisers).
pub enum ParamMut<'a> {
    R1(&'a mut Param<Tensor<1>>),
    R2(&'a mut Param<Tensor<2>>),
    R3(&'a mut Param<Tensor<3>>),
    R4(&'a mut Param<Tensor<4>>),
}

macro_rules! param_mut_from {
    ($($r:ident $d:literal),*) => {$(
        impl<'a> From<&'a mut Param<Tensor<$d>>> for ParamMut<'a> {
            fn from(p: &'a mut Param<Tensor<$d>>) -> Self {
                ParamMut::$r(p)
            }
        }
    )*};
}
param_mut_from!(R1 1, R2 2, R3 3, R4 4);

impl ParamMut<'_> {
    /// A clone of the parameter (tensors are shared handles).
    pub fn to_any(&self) -> AnyParam {
        match self {
            ParamMut::R1(p) => AnyParam::R1((*p).clone()),
            ParamMut::R2(p) => AnyParam::R2((*p).clone()),
            ParamMut::R3(p) => AnyParam::R3((*p).clone()),
            ParamMut::R4(p) => AnyParam::R4((*p).clone()),
        }
    }

    /// The value flattened to one dimension.
    pub fn flat(&self) -> Tensor<1> {
        match self {
            ParamMut::R1(p) => p.val(),
            ParamMut::R2(p) => p.val().flatten(0, 1),
            ParamMut::R3(p) => p.val().flatten(0, 2),
            ParamMut::R4(p) => p.val().flatten(0, 3),
        }
    }

    /// Takes the parameter out of autodiff (a constant for inference: no graph is recorded).
    pub fn to_constant(&mut self) {
        fn put<const D: usize>(p: &mut Param<Tensor<D>>) {
            *p = Param::initialized(p.id, p.val().inner());
        }
        match self {
            ParamMut::R1(p) => put(p),
            ParamMut::R2(p) => put(p),
            ParamMut::R3(p) => put(p),
            ParamMut::R4(p) => put(p),
        }
    }

    /// Replaces the value with `flat` (same number of elements) reshaped to the parameter's
    /// shape, keeping the parameter's id; gradients are required again on autodiff devices.
    pub fn set_flat(&mut self, flat: Tensor<1>) {
        fn put<const D: usize>(p: &mut Param<Tensor<D>>, flat: Tensor<1>) {
            let old = p.val();
            let shape = old.shape();
            let autodiff = old.is_autodiff();
            let mut t: Tensor<D> = flat.reshape(shape);
            if autodiff {
                t = t.autodiff().require_grad();
            }
            *p = Param::initialized(p.id, t);
        }
        match self {
            ParamMut::R1(p) => put(p, flat),
            ParamMut::R2(p) => put(p, flat),
            ParamMut::R3(p) => put(p, flat),
            ParamMut::R4(p) => put(p, flat),
        }
    }
}

/// What a module calls for each of its parameters: the full official name and the parameter.
pub type Visit<'a> = dyn FnMut(String, ParamMut<'_>) + 'a;

/// Modules that visit their parameters under official names.
pub trait NamedParams {
    fn visit_params(&mut self, prefix: &str, out: &mut Visit<'_>);

    /// (name, parameter clone) in the module's order.
    fn named_params(&mut self, prefix: &str, out: &mut Vec<(String, AnyParam)>) {
        self.visit_params(prefix, &mut |name, p| out.push((name, p.to_any())));
    }

    fn param_count(&mut self) -> usize {
        let mut v = Vec::new();
        self.named_params("", &mut v);
        v.iter().map(|(_, p)| p.numel()).sum()
    }
}
