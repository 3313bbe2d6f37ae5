//! Training on the GPU: AdamW against the f64 reference, and a short real training run on
//! polyp images whose loss must fall.

use crate::{gpu, shared_dir, Lcg};
use medseg_data::dataset::{load_pairs, Dataset};
use medseg_data::preprocess::{Normalization, Sample};
use medseg_data::MaskOptions;
use medseg_model::fixtures::{tensor, values};
use medseg_model::nn::net::NetConfig;
use medseg_model::nn::params::NamedParams;
use medseg_model::nn::vm_unet::VmUnetConfig;
use medseg_model::train::adamw::{AdamState, AdamW};
use medseg_model::train::checkpoint;
use medseg_model::train::optim::{Cosine, GpuAdamW};
use medseg_model::train::trainer::{self, Event, TrainConfig, TrainState};

fn small(encoder_rsss: bool) -> NetConfig {
    let base = if encoder_rsss {
        VmUnetConfig::sa_umamba(1)
    } else {
        VmUnetConfig::paper(1)
    };
    NetConfig::VmUnet(VmUnetConfig {
        dims: vec![16, 32, 64, 128],
        depths: vec![1, 1, 1, 1],
        depths_decoder: vec![1, 1, 1, 1],
        d_state: 8,
        ..base
    })
}

/// Two AdamW steps on the GPU give the weights the f64 reference computes from the same
/// gradients, within 1e-6 absolute.
#[test]
fn gpu_adamw_matches_the_f64_reference() {
    let Some(ctx) = gpu() else { return };
    let dev = ctx.autodiff_device();
    let mut net = trainer::init_network(&small(true), 3, &dev).unwrap();
    let mut rng = Lcg(11);
    let x = tensor(rng.vec(2 * 3 * 32 * 32, 128.0, 127.0), [2, 3, 32, 32], &dev);
    let y = tensor(
        rng.vec(2 * 32 * 32, 0.0, 1.0)
            .into_iter()
            .map(|v| (v > 0.3) as u8 as f64)
            .collect(),
        [2, 1, 32, 32],
        &dev,
    );
    let cfg = AdamW::official();
    let mut opt = GpuAdamW::new(cfg);
    // CPU copies of every parameter and its AdamW state.
    let mut named = Vec::new();
    net.named_params("", &mut named);
    let mut cpu: Vec<(Vec<f64>, AdamState)> = named
        .iter()
        .map(|(_, p)| {
            let v = match p {
                medseg_model::nn::params::AnyParam::R1(p) => values(p.val()),
                medseg_model::nn::params::AnyParam::R2(p) => values(p.val()),
                medseg_model::nn::params::AnyParam::R3(p) => values(p.val()),
                medseg_model::nn::params::AnyParam::R4(p) => values(p.val()),
            };
            (v.unwrap(), AdamState::default())
        })
        .collect();
    for (step, lr) in [1e-3, 5e-4].into_iter().enumerate() {
        let grads = net.train_loss(x.clone(), y.clone()).unwrap().backward();
        let mut named = Vec::new();
        net.named_params("", &mut named);
        let mut with_grad = 0;
        for ((name, p), (w, st)) in named.iter().zip(cpu.iter_mut()) {
            if let Some(g) = p.grad(&grads) {
                let g = values(g).unwrap();
                let c = AdamW { lr, ..cfg };
                c.step(w, &g, st);
                with_grad += 1;
            } else {
                assert!(name.ends_with("conv.0.bias"), "{name} got no gradient");
            }
        }
        assert_eq!(opt.step(&mut net, &grads, lr), with_grad, "step {step}");
    }
    let mut named = Vec::new();
    net.named_params("", &mut named);
    let mut worst = (0.0f64, String::new());
    for ((name, p), (w, _)) in named.iter().zip(&cpu) {
        let got = match p {
            medseg_model::nn::params::AnyParam::R1(p) => values(p.val()),
            medseg_model::nn::params::AnyParam::R2(p) => values(p.val()),
            medseg_model::nn::params::AnyParam::R3(p) => values(p.val()),
            medseg_model::nn::params::AnyParam::R4(p) => values(p.val()),
        }
        .unwrap();
        for (a, b) in got.iter().zip(w) {
            if (a - b).abs() > worst.0 {
                worst = ((a - b).abs(), name.clone());
            }
        }
    }
    assert!(
        worst.0 < 1e-6,
        "worst |GPU − f64| {:.2e} in {}",
        worst.0,
        worst.1
    );
}

/// The first `n_train` training and `n_val` validation pairs of the reference polyp split,
/// prepared at `size`².
fn polyp(n_train: usize, n_val: usize, size: usize) -> (Vec<Sample>, Vec<Sample>) {
    let data = shared_dir().join("data/polyp");
    let ds = Dataset::scan(&data).expect("../shared/data/polyp");
    let split = ds.split_from_file(&data.join("split.json")).unwrap();
    let (tr, bad) = load_pairs(&split.train[..n_train], &MaskOptions::default());
    assert!(bad.is_empty(), "{bad:?}");
    let (va, bad) = load_pairs(&split.val[..n_val], &MaskOptions::default());
    assert!(bad.is_empty(), "{bad:?}");
    (
        trainer::prepare(&tr, size, 2, Normalization::RgbMinMax255).unwrap(),
        trainer::prepare(&va, size, 2, Normalization::RgbMinMax255).unwrap(),
    )
}

/// A small SA-UMamba trained for 48 steps on 16 polyp images (64², batch 8, official AdamW and
/// cosine schedule, no augmentation so the data are fixed) ends with a clearly lower loss than
/// it started with and below the best constant prediction; it writes checkpoints, resumes
/// exactly, and a checkpoint that does not fit its configuration is refused.
#[test]
fn training_on_polyp_images_lowers_the_loss() {
    let Some(ctx) = gpu() else { return };
    let size = 64;
    let (train, val) = polyp(16, 16, size);
    let dev = ctx.autodiff_device();
    let epochs = 24;
    let mut cfg = TrainConfig::reference(small(true), epochs);
    cfg.batch = 8;
    cfg.size = size;
    cfg.augment = false;
    cfg.schedule = Cosine::official(epochs);
    let mut net = trainer::init_network(&cfg.net, cfg.seed, &dev).unwrap();
    let out = std::env::temp_dir().join(format!("medseg-train-test-{}", std::process::id()));
    let mut epochs_seen = 0;
    let mut state = TrainState::new(&cfg);
    let summary = trainer::train(
        &mut net,
        &cfg,
        &mut state,
        &train,
        &val,
        Some(&out),
        &mut |e| {
            if let Event::Epoch(r) = e {
                epochs_seen += 1;
                eprintln!(
                    "epoch {} loss {:.4} val DSC {:?}",
                    r.epoch, r.train_loss, r.val_dsc
                );
            }
            true
        },
    )
    .unwrap();
    assert_eq!(epochs_seen, epochs);
    let l = &summary.step_losses;
    eprintln!("{l:?}");
    assert_eq!(l.len(), 2 * epochs);
    let first = l[..4].iter().sum::<f64>() / 4.0;
    let last = l[l.len() - 4..].iter().sum::<f64>() / 4.0;
    eprintln!("mean loss of the first 4 steps {first:.4}, of the last 4 {last:.4}");
    assert!(
        last < 0.8 * first,
        "the loss did not fall clearly: {first:.4} → {last:.4}"
    );
    // And below what any constant prediction can reach on these masks (BceDice of the best
    // constant probability, per batch of 8 as in training): the network learned where polyps
    // are, not only how common they are.
    let floor = (1..1000)
        .map(|k| {
            let p = k as f64 / 1000.0;
            let batches: Vec<f64> = train
                .chunks(8)
                .map(|b| {
                    let n = b[0].mask.len() as f64;
                    let bce = b
                        .iter()
                        .flat_map(|s| &s.mask)
                        .map(|&y| -(y as f64 * p.ln() + (1.0 - y as f64) * (1.0 - p).ln()))
                        .sum::<f64>()
                        / (n * b.len() as f64);
                    let dice = b
                        .iter()
                        .map(|s| {
                            let sy: f64 = s.mask.iter().map(|&y| y as f64).sum();
                            (2.0 * p * sy + 1.0) / (p * n + sy + 1.0)
                        })
                        .sum::<f64>()
                        / b.len() as f64;
                    bce + 1.0 - dice
                })
                .collect();
            batches.iter().sum::<f64>() / batches.len() as f64
        })
        .fold(f64::INFINITY, f64::min);
    eprintln!("best constant prediction: loss {floor:.4}");
    assert!(
        last < floor - 0.05,
        "{last:.4} is not clearly below the constant-prediction loss {floor:.4}"
    );
    // Checkpoints: every parameter and running statistic under its official name.
    let bytes = std::fs::read(out.join("last.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut named = Vec::new();
    net.named_params("", &mut named);
    for (name, p) in &named {
        let t = st.tensor(name).unwrap_or_else(|_| panic!("{name} missing"));
        assert_eq!(t.data().len(), 4 * p.numel(), "{name}");
    }
    assert!(st.names().iter().any(|n| n.ends_with("running_var")));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("last.json")).unwrap()).unwrap();
    assert_eq!(meta["model"], "sa-umamba");
    assert_eq!(meta["epoch"]["epoch"], epochs);
    assert!(out.join("best.safetensors").exists() && out.join("history.json").exists());

    // Resuming: the saved state continues exactly like the run in memory.
    let (mut resumed, mut resumed_state) = checkpoint::load_state(&out, &cfg, &dev).unwrap();
    assert_eq!(resumed_state.next_epoch, epochs);
    let mut more = cfg.clone();
    more.epochs = epochs + 1;
    let a = trainer::train(&mut net, &more, &mut state, &train, &[], None, &mut |_| {
        true
    })
    .unwrap();
    let b = trainer::train(
        &mut resumed,
        &more,
        &mut resumed_state,
        &train,
        &[],
        None,
        &mut |_| true,
    )
    .unwrap();
    let tail = |s: &trainer::TrainSummary| s.step_losses[s.step_losses.len() - 2..].to_vec();
    assert_eq!(
        tail(&a),
        tail(&b),
        "a resumed run diverged from the original"
    );

    // A checkpoint that does not fit its configuration is refused with the mismatches named.
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("last.json")).unwrap()).unwrap();
    meta["config"]["dims"] = serde_json::json!([16, 32, 64, 256]);
    let wrong = out.join("wrong.json");
    std::fs::write(&wrong, serde_json::to_vec(&meta).unwrap()).unwrap();
    let e = checkpoint::load(&wrong, &dev).expect_err("refused");
    assert!(
        matches!(
            &e,
            checkpoint::CheckpointError::Mismatch { path: Some(p), .. }
                if p.extension().is_some_and(|x| x == "safetensors")
        ),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(
        e.contains("does not match") && e.contains("layers.3"),
        "{e}"
    );
}

/// A run stopped in the middle of an epoch (with augmentation and stochastic depth on) saves a
/// state that continues at the next step and ends with the same losses and weights as a run
/// that was never stopped; only the newest state's weights file is kept.
#[test]
fn a_run_stopped_mid_epoch_continues_exactly() {
    let Some(ctx) = gpu() else { return };
    let size = 32;
    let (train, _) = polyp(12, 0, size);
    let dev = ctx.autodiff_device();
    let mut cfg = TrainConfig::reference(small(false), 2);
    cfg.batch = 4;
    cfg.size = size;
    let weights = |net: &mut medseg_model::nn::net::Net| -> Vec<f64> {
        let mut named = Vec::new();
        net.named_params("", &mut named);
        named
            .iter()
            .flat_map(|(_, p)| match p {
                medseg_model::nn::params::AnyParam::R1(p) => values(p.val()).unwrap(),
                medseg_model::nn::params::AnyParam::R2(p) => values(p.val()).unwrap(),
                medseg_model::nn::params::AnyParam::R3(p) => values(p.val()).unwrap(),
                medseg_model::nn::params::AnyParam::R4(p) => values(p.val()).unwrap(),
            })
            .collect()
    };
    // Uninterrupted: 2 epochs of 3 steps.
    let mut net = trainer::init_network(&cfg.net, cfg.seed, &dev).unwrap();
    let mut state = TrainState::new(&cfg);
    let whole =
        trainer::train(&mut net, &cfg, &mut state, &train, &[], None, &mut |_| true).unwrap();
    assert_eq!(whole.step_losses.len(), 6);
    let whole_weights = weights(&mut net);

    // Stopped when epoch 2's first step is reported (its second step is already applied).
    let out = std::env::temp_dir().join(format!("medseg-stop-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut net = trainer::init_network(&cfg.net, cfg.seed, &dev).unwrap();
    let mut state = TrainState::new(&cfg);
    let part = trainer::train(
        &mut net,
        &cfg,
        &mut state,
        &train,
        &[],
        Some(&out),
        &mut |e| {
            !matches!(
                e,
                Event::Step {
                    epoch: 2,
                    step: 1,
                    ..
                }
            )
        },
    )
    .unwrap();
    assert!(part.cancelled);
    assert_eq!((state.next_epoch, state.next_step), (1, 2));
    assert_eq!(part.step_losses, whole.step_losses[..5].to_vec());
    let states: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("state") && n.ends_with(".safetensors"))
        .collect();
    assert_eq!(states, vec!["state-1-2.safetensors".to_string()]);

    let (mut resumed, mut resumed_state) = checkpoint::load_state(&out, &cfg, &dev).unwrap();
    assert_eq!((resumed_state.next_epoch, resumed_state.next_step), (1, 2));
    let rest = trainer::train(
        &mut resumed,
        &cfg,
        &mut resumed_state,
        &train,
        &[],
        Some(&out),
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(rest.step_losses, whole.step_losses);
    assert_eq!(
        rest.epochs[1].train_loss, whole.epochs[1].train_loss,
        "the resumed epoch's mean loss covers all its steps"
    );
    let worst = weights(&mut resumed)
        .iter()
        .zip(&whole_weights)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst == 0.0, "resumed weights differ by up to {worst:.3e}");
    let _ = std::fs::remove_dir_all(&out);
}

/// A NaN in one training image stops the run with a message naming the epoch and step; the
/// checkpoints of the last finished epoch are untouched and still load.
#[test]
fn a_nan_in_the_data_stops_the_run_and_keeps_the_last_checkpoint() {
    let Some(ctx) = gpu() else { return };
    let size = 32;
    let (mut train, _) = polyp(8, 0, size);
    let dev = ctx.autodiff_device();
    let mut cfg = TrainConfig::reference(small(false), 3);
    cfg.batch = 4;
    cfg.size = size;
    cfg.augment = false;
    let out = std::env::temp_dir().join(format!("medseg-nan-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut net = trainer::init_network(&cfg.net, cfg.seed, &dev).unwrap();
    let mut state = TrainState::new(&cfg);
    let mut one_epoch = |e: Event| !matches!(e, Event::Epoch(_));
    trainer::train(
        &mut net,
        &cfg,
        &mut state,
        &train,
        &[],
        Some(&out),
        &mut one_epoch,
    )
    .unwrap();
    assert_eq!(state.next_epoch, 1);
    let saved = std::fs::read(out.join("last.safetensors")).unwrap();

    for s in train.iter_mut() {
        s.image[5] = f32::NAN;
    }
    let e = trainer::train(
        &mut net,
        &cfg,
        &mut state,
        &train,
        &[],
        Some(&out),
        &mut |_| true,
    )
    .expect_err("a NaN loss stops the run");
    assert!(
        e.contains("NaN") && e.contains("epoch 2, step 1"),
        "the message names the value, the epoch and the step: {e}"
    );
    assert_eq!(
        std::fs::read(out.join("last.safetensors")).unwrap(),
        saved,
        "the last good checkpoint is untouched"
    );
    checkpoint::load(&out.join("last.json"), &dev).expect("the last checkpoint loads");
    let (_, resumed) = checkpoint::load_state(&out, &cfg, &dev).expect("the state loads");
    assert_eq!((resumed.next_epoch, resumed.next_step), (1, 0));
    let _ = std::fs::remove_dir_all(&out);
}
