//! USEMA on the GPU: every decoder scale comes out with its shape, gradients reach every
//! parameter, the mean-term flag matters, and a short training run on polyp images learns.

use crate::{gpu, shared_dir, Lcg};
use medseg_data::dataset::{load_pairs, Dataset};
use medseg_data::preprocess::Normalization;
use medseg_data::MaskOptions;
use medseg_model::fixtures::{rel_l2, tensor, values};
use medseg_model::nn::net::{Net, NetConfig};
use medseg_model::nn::params::{Loader, NamedParams};
use medseg_model::nn::usema::{Usema, UsemaConfig};
use medseg_model::train::checkpoint;
use medseg_model::train::optim::Cosine;
use medseg_model::train::trainer::{self, Event, TrainConfig, TrainState};

/// Four stages (16, 32, 64, 64 features, head dim 16), windows of 8: at 64² the maps are
/// 64², 32², 16² (windowed) and 8² (full attention).
fn small() -> UsemaConfig {
    UsemaConfig {
        features: vec![16, 32, 64, 64],
        head_dim: 16,
        window: 8,
        ..UsemaConfig::default_for(64, 3, 2)
    }
}

#[test]
fn usema_outputs_every_scale_and_gradients_reach_every_parameter() {
    let Some(ctx) = gpu() else { return };
    let dev = ctx.autodiff_device();
    let cfg = small();
    let mut net = trainer::init_network(&NetConfig::Usema(cfg.clone()), 5, &dev).unwrap();
    let mut r = Lcg(3);
    let x = tensor(r.vec(2 * 3 * 64 * 64, 0.0, 1.0), [2, 3, 64, 64], &dev);
    let y = tensor(
        r.vec(2 * 64 * 64, 0.0, 1.0)
            .into_iter()
            .map(|v| (v > 0.4) as u8 as f64)
            .collect(),
        [2, 1, 64, 64],
        &dev,
    );
    let Net::Usema(u) = &net else { unreachable!() };
    let outs = u.forward(x.clone()).unwrap();
    let dims: Vec<[usize; 4]> = outs.iter().map(|o| o.dims()).collect();
    assert_eq!(dims, vec![[2, 2, 64, 64], [2, 2, 32, 32], [2, 2, 16, 16]]);
    let loss = net.train_loss(x, y).unwrap();
    let l = values(loss.clone()).unwrap()[0];
    assert!(l.is_finite(), "{l}");
    let grads = loss.backward();
    let mut named = Vec::new();
    net.named_params("", &mut named);
    let mut without = Vec::new();
    for (name, p) in &named {
        match p.grad(&grads) {
            // The lowest decoder output has weight 0, so its head learns nothing.
            None if name == "decoder.0.head.weight" || name == "decoder.0.head.bias" => {}
            None => without.push(name.clone()),
            Some(g) => {
                let g = values(g).unwrap();
                assert!(
                    g.iter().all(|v| v.is_finite()),
                    "{name}: non-finite gradient"
                );
            }
        }
    }
    assert!(without.is_empty(), "no gradient for {without:?}");
    // stem (projection block, 10 tensors); stage 0: two identity blocks (8 each) + SEMA (24);
    // stages 1-3: projection + identity + SEMA; decoder: up (2) + projection block + head (2).
    assert_eq!(
        named.len(),
        10 + (8 + 8 + 24) + 3 * (10 + 8 + 24) + 3 * (2 + 10 + 2)
    );
}

#[test]
fn the_mean_term_flag_changes_the_output_and_nothing_else() {
    let Some(ctx) = gpu() else { return };
    let dev = ctx.device.clone();
    let build = |mean_term: bool| {
        let cfg = UsemaConfig {
            mean_term,
            ..small()
        };
        let mut init = medseg_model::nn::init::HeInit::new(9);
        Usema::load(cfg, &mut Loader::new(&mut init, dev.clone(), "")).unwrap()
    };
    let (mut with, mut without) = (build(true), build(false));
    assert_eq!(with.param_count(), without.param_count());
    let x = tensor(Lcg(4).vec(3 * 64 * 64, 0.0, 1.0), [1, 3, 64, 64], &dev);
    let a = values(with.forward(x.clone()).unwrap().remove(0)).unwrap();
    let b = values(without.forward(x).unwrap().remove(0)).unwrap();
    // Same seed, same weights: the networks compute identically except for the flag. At
    // initialisation the attention branch enters through out_proj (std 0.02), so its effect on
    // the logits is small (~4e-4 relative) but far above zero.
    let e = rel_l2(&a, &b);
    assert!(e > 1e-5, "the mean term had no effect ({e:.2e})");
}

/// A small USEMA trained for 24 steps on 32 polyp images (64², batch 8, AdamW, cosine, no
/// augmentation): the deep-supervised Dice + CE falls clearly, validation finds polyps, and
/// the checkpoint reloads to the same predictions.
#[test]
fn usema_training_on_polyp_images_lowers_the_loss() {
    let Some(ctx) = gpu() else { return };
    let data = shared_dir().join("data/polyp");
    let ds = Dataset::scan(&data).expect("../shared/data/polyp");
    let split = ds.split_from_file(&data.join("split.json")).unwrap();
    let (tr, bad) = load_pairs(&split.train[..32], &MaskOptions::default());
    assert!(bad.is_empty());
    let (va, _) = load_pairs(&split.val[..8], &MaskOptions::default());
    let size = 64;
    let train = trainer::prepare(&tr, size, 2, Normalization::RgbMinMax255).unwrap();
    let val = trainer::prepare(&va, size, 2, Normalization::RgbMinMax255).unwrap();
    let dev = ctx.autodiff_device();
    let epochs = 6;
    let mut cfg = TrainConfig::reference(NetConfig::Usema(small()), epochs);
    cfg.batch = 8;
    cfg.size = size;
    cfg.augment = false;
    cfg.schedule = Cosine::official(epochs);
    let mut net = trainer::init_network(&cfg.net, cfg.seed, &dev).unwrap();
    let out = std::env::temp_dir().join(format!("medseg-usema-test-{}", std::process::id()));
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
                eprintln!(
                    "epoch {} loss {:.4} val DSC {:?} ({:.1} s)",
                    r.epoch, r.train_loss, r.val_dsc, r.seconds
                );
            }
            true
        },
    )
    .unwrap();
    let l = &summary.step_losses;
    assert_eq!(l.len(), 4 * epochs);
    let first = l[..4].iter().sum::<f64>() / 4.0;
    let last = l[l.len() - 4..].iter().sum::<f64>() / 4.0;
    eprintln!("mean loss of the first 4 steps {first:.4}, of the last 4 {last:.4}");
    // Dice + CE starts near ln 2 − (a small Dice); learning polyps takes it well below.
    assert!(
        last < first - 0.3,
        "the loss did not fall clearly: {first:.4} → {last:.4}"
    );
    let best = summary.best_val_dsc.unwrap();
    assert!(best > 0.2, "validation DSC {best:.3}");

    // The checkpoint reloads (config included) and predicts the same.
    let (mut loaded, meta) = checkpoint::load(&out.join("last.json"), &dev).unwrap();
    assert_eq!(meta["model"], "usema");
    assert_eq!(loaded.config(), cfg.net);
    let x = tensor(
        Lcg(8).vec(3 * 64 * 64, 100.0, 100.0),
        [1, 3, 64, 64],
        &dev.clone().inner(),
    );
    let mut eval = net.clone();
    eval.visit_params("", &mut |_, mut p| p.to_constant());
    loaded.visit_params("", &mut |_, mut p| p.to_constant());
    let a = values(eval.foreground(x.clone()).unwrap()).unwrap();
    let b = values(loaded.foreground(x).unwrap()).unwrap();
    assert!(rel_l2(&b, &a) < 1e-6);
    let _ = std::fs::remove_dir_all(&out);
}
