//! The inference API: a network as a sliding-window tile model.

use crate::{gpu, Lcg};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Tensor, TensorData};
use medseg_data::sliding::SlidingWindow;
use medseg_model::infer::Segmenter;
use medseg_model::nn::params::{Loader, RandomWeights};
use medseg_model::nn::vm_unet::{BlockKind, VmUnet, VmUnetConfig};

fn small(classes: usize) -> VmUnetConfig {
    VmUnetConfig {
        dims: vec![8, 16, 32, 64],
        depths: vec![1; 4],
        depths_decoder: vec![1; 4],
        d_state: 4,
        num_classes: classes,
        in_channels: 3,
        encoder_block: BlockKind::Vss,
        decoder_block: BlockKind::Vss,
    }
}

/// An interleaved H × W × 3 image as a (1, 3, H, W) tensor.
fn nchw(image: &[f32], w: usize, h: usize, device: &burn::tensor::Device) -> Tensor<4> {
    let mut out = vec![0.0f32; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                out[(c * h + y) * w + x] = image[(y * w + x) * 3 + c];
            }
        }
    }
    Tensor::<4>::from_data(TensorData::new(out, [1, 3, h, w]), device)
}

#[test]
fn one_tile_equals_a_direct_forward_pass() {
    let Some(ctx) = gpu() else { return };
    let build = || {
        VmUnet::load(
            small(1),
            &mut Loader::new(&mut RandomWeights { state: 9 }, ctx.device.clone(), ""),
        )
        .unwrap()
    };
    let (w, h) = (64, 64);
    let mut rng = Lcg(4);
    // Interleaved H × W × C, as images are stored.
    let image: Vec<f32> = (0..w * h * 3).map(|_| rng.uniform() as f32).collect();
    let mut seg = Segmenter::new(build(), ctx.device.clone(), 64, 1 << 30).unwrap();
    let probs = seg
        .predict(&image, w, h, &SlidingWindow::default(), &mut |_, _| true)
        .unwrap();
    // The same image as NCHW through the network directly.
    let x = nchw(&image, w, h, &ctx.device);
    let direct = sigmoid(build().forward(x, false).unwrap());
    let direct: Vec<f32> = direct
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(probs.len(), direct.len());
    let worst = probs
        .iter()
        .zip(&direct)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "sliding window vs direct forward: {worst}");
}

#[test]
fn any_size_gives_probabilities_and_progress() {
    let Some(ctx) = gpu() else { return };
    let net = VmUnet::load(
        small(3),
        &mut Loader::new(&mut RandomWeights { state: 5 }, ctx.device.clone(), ""),
    )
    .unwrap();
    let mut seg = Segmenter::new(net, ctx.device.clone(), 32, 1 << 30).unwrap();
    let (w, h) = (75, 41);
    let mut rng = Lcg(8);
    let image: Vec<f32> = (0..w * h * 3).map(|_| rng.uniform() as f32).collect();
    let mut calls = 0;
    let probs = seg
        .predict(
            &image,
            w,
            h,
            &SlidingWindow::default(),
            &mut |done, total| {
                assert!(done <= total);
                calls += 1;
                true
            },
        )
        .unwrap();
    assert!(calls >= 2);
    assert_eq!(probs.len(), 3 * w * h);
    for p in 0..w * h {
        let s: f32 = (0..3).map(|c| probs[c * w * h + p]).sum();
        assert!((s - 1.0).abs() < 1e-4, "softmax sums to 1 (pixel {p}: {s})");
    }
    // Cancel, bad tiles and bad values are errors, not panics.
    let err = seg
        .predict(&image, w, h, &SlidingWindow::default(), &mut |_, _| false)
        .unwrap_err();
    assert!(err.contains("cancelled"), "{err}");
    let mut bad = image.clone();
    bad[7] = f32::NAN;
    let err = seg
        .predict(&bad, w, h, &SlidingWindow::default(), &mut |_, _| true)
        .unwrap_err();
    assert!(err.contains("non-finite"), "{err}");
    let net = VmUnet::load(
        small(1),
        &mut Loader::new(&mut RandomWeights { state: 5 }, ctx.device.clone(), ""),
    )
    .unwrap();
    assert!(Segmenter::new(net, ctx.device.clone(), 48, 1 << 30).is_err());
}

/// USEMA through the same API: one 64² tile equals the softmax of its full-resolution output,
/// and a tile that is not a multiple of its stride is refused.
#[test]
fn usema_segments_through_the_same_api() {
    use medseg_model::nn::usema::{Usema, UsemaConfig};
    let Some(ctx) = gpu() else { return };
    let cfg = UsemaConfig {
        features: vec![16, 32, 64],
        head_dim: 16,
        window: 8,
        ..UsemaConfig::default_for(64, 3, 2)
    };
    let build = || {
        Usema::load(
            cfg.clone(),
            &mut Loader::new(&mut RandomWeights { state: 5 }, ctx.device.clone(), ""),
        )
        .unwrap()
    };
    // Three stages: stride 4.
    let e = Segmenter::new(build(), ctx.device.clone(), 30, 1 << 30)
        .err()
        .expect("30 is not a multiple of the stride");
    assert!(e.contains("multiple of 4 for usema, is 30"), "{e}");
    let (w, h) = (64, 64);
    let mut rng = Lcg(6);
    let image: Vec<f32> = (0..w * h * 3).map(|_| rng.uniform() as f32).collect();
    let mut seg = Segmenter::new(build(), ctx.device.clone(), 64, 1 << 30).unwrap();
    assert_eq!(seg.classes(), 2);
    let probs = seg
        .predict(&image, w, h, &SlidingWindow::default(), &mut |_, _| true)
        .unwrap();
    let x = nchw(&image, w, h, &ctx.device);
    let logits = build().forward(x).unwrap().remove(0);
    let direct: Vec<f32> = burn::tensor::activation::softmax(logits, 1)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(probs.len(), direct.len());
    let worst = probs
        .iter()
        .zip(&direct)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "worst difference {worst}");
}
