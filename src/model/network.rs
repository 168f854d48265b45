//! The shared-bottom multi-task network (docs/design.md §4) in `tch`.
//!
//! The first layer is three linear maps, one per input part (user, campaign,
//! pair), summed: the same as one linear layer on the concatenated input, but
//! organised so scoring can compute the user and campaign parts separately.
//! Then BatchNorm → ReLU → Linear → ReLU, and one tower (Linear → ReLU → Linear)
//! per task. Variables of the embeddings and the encoder are in optimiser group
//! 0, the towers in group 1, so fine-tuning can slow or freeze the encoder.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

use super::features::{FeatureSpec, Side};

/// The five tasks, in the order of the network's outputs.
pub use crate::contract::TASKS;

/// Optimiser group of the embeddings and the shared encoder.
pub const ENCODER_GROUP: usize = 0;
/// Optimiser group of the towers.
pub const TOWER_GROUP: usize = 1;

const BATCH_NORM_EPS: f64 = 1e-5;

/// Layer sizes. Defaults: encoder 256 → 128, towers 64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    pub encoder: [i64; 2],
    pub tower: i64,
    pub tasks: Vec<String>,
}

impl Default for Architecture {
    fn default() -> Self {
        Architecture { encoder: [256, 128], tower: 64, tasks: TASKS.iter().map(|t| t.to_string()).collect() }
    }
}

/// Encoded inputs of a batch of rows, as tensors: per side, bucket indices
/// `[n, cat_width]` (Int64) and raw dense values `[n, dense]` (Float).
pub struct Inputs {
    pub user_cat: Tensor,
    pub user_dense: Tensor,
    pub campaign_cat: Tensor,
    pub campaign_dense: Tensor,
    pub pair: Tensor,
}

impl Inputs {
    /// The rows at `index` (an Int64 tensor).
    pub fn select(&self, index: &Tensor) -> Inputs {
        Inputs {
            user_cat: self.user_cat.index_select(0, index),
            user_dense: self.user_dense.index_select(0, index),
            campaign_cat: self.campaign_cat.index_select(0, index),
            campaign_dense: self.campaign_dense.index_select(0, index),
            pair: self.pair.index_select(0, index),
        }
    }

    pub fn len(&self) -> i64 {
        self.pair.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The embeddings and normalisation of one input part.
struct Part {
    /// Per categorical feature: its embedding table (last row: padding) and slots.
    embeddings: Vec<(Tensor, usize)>,
    mean: Tensor,
    std: Tensor,
}

impl Part {
    fn new(path: nn::Path, side: &Side) -> Part {
        let embeddings = side
            .categorical
            .iter()
            .map(|c| {
                // One extra row, kept at zero, for empty slots.
                let config = nn::EmbeddingConfig { padding_idx: c.buckets, ..Default::default() };
                (nn::embedding(&path / c.name.as_str(), c.buckets + 1, c.dim, config).ws, c.slots)
            })
            .collect();
        let mean = Tensor::from_slice(&side.dense.iter().map(|d| d.mean).collect::<Vec<_>>());
        let std = Tensor::from_slice(&side.dense.iter().map(|d| d.std).collect::<Vec<_>>());
        Part { embeddings, mean, std }
    }

    fn shallow_clone(&self) -> Part {
        Part {
            embeddings: self.embeddings.iter().map(|(t, slots)| (t.shallow_clone(), *slots)).collect(),
            mean: self.mean.shallow_clone(),
            std: self.std.shallow_clone(),
        }
    }

    /// `[n, input_width]`: summed slot embeddings of each feature, then the
    /// normalised dense values.
    fn input(&self, cat: &Tensor, dense: &Tensor) -> Tensor {
        let mut pieces = Vec::with_capacity(self.embeddings.len() + 1);
        let mut offset = 0;
        for (table, slots) in &self.embeddings {
            let slots = *slots as i64;
            let ids = cat.narrow(1, offset, slots);
            let vectors = Tensor::embedding(table, &ids, table.size()[0] - 1, false, false);
            pieces.push(if slots == 1 {
                vectors.squeeze_dim(1)
            } else {
                vectors.sum_dim_intlist(1, false, Kind::Float)
            });
            offset += slots;
        }
        pieces.push(self.normalise(dense));
        Tensor::cat(&pieces, 1)
    }

    fn normalise(&self, dense: &Tensor) -> Tensor {
        (dense - &self.mean) / &self.std
    }
}

pub struct Network {
    pub architecture: Architecture,
    user: Part,
    campaign: Part,
    pair: Part,
    user_in: nn::Linear,
    campaign_in: nn::Linear,
    pair_in: nn::Linear,
    norm: nn::BatchNorm,
    hidden: nn::Linear,
    towers: Vec<(nn::Linear, nn::Linear)>,
}

impl Network {
    /// Creates the network's variables under `root` for `spec` and `architecture`.
    pub fn new(root: &nn::Path, spec: &FeatureSpec, architecture: &Architecture) -> Network {
        let encoder = root.set_group(ENCODER_GROUP);
        let towers_path = root.set_group(TOWER_GROUP);
        let [width, hidden] = architecture.encoder;
        let no_bias = nn::LinearConfig { bias: false, ..Default::default() };
        let norm_config = nn::BatchNormConfig { eps: BATCH_NORM_EPS, ..Default::default() };
        Network {
            architecture: architecture.clone(),
            user: Part::new(&encoder / "user", &spec.user),
            campaign: Part::new(&encoder / "campaign", &spec.campaign),
            pair: Part::new(&encoder / "pair", &spec.pair),
            user_in: nn::linear(&encoder / "user_in", spec.user.input_width(), width, no_bias),
            campaign_in: nn::linear(&encoder / "campaign_in", spec.campaign.input_width(), width, Default::default()),
            pair_in: nn::linear(&encoder / "pair_in", spec.pair.input_width(), width, no_bias),
            norm: nn::batch_norm1d(&encoder / "norm", width, norm_config),
            hidden: nn::linear(&encoder / "hidden", width, hidden, Default::default()),
            towers: architecture
                .tasks
                .iter()
                .map(|task| {
                    let path = &towers_path / task.as_str();
                    (
                        nn::linear(&path / "0", hidden, architecture.tower, Default::default()),
                        nn::linear(&path / "1", architecture.tower, 1, Default::default()),
                    )
                })
                .collect(),
        }
    }

    /// Re-initialises the tower of `task` (a new head for a new objective), with
    /// the same distribution as a fresh linear layer.
    pub fn reset_tower(&self, task: usize) {
        tch::no_grad(|| {
            let (a, b) = &self.towers[task];
            for linear in [a, b] {
                let bound = 1.0 / (linear.ws.size()[1] as f64).sqrt();
                let _ = linear.ws.shallow_clone().uniform_(-bound, bound);
                if let Some(bs) = &linear.bs {
                    let _ = bs.shallow_clone().uniform_(-bound, bound);
                }
            }
        });
    }

    /// Copies the tower of task `from` over the tower of task `to` (a
    /// promotions-only model serving ads through its promotion-stream head).
    pub fn copy_tower(&self, from: usize, to: usize) {
        tch::no_grad(|| {
            let ((from_a, from_b), (to_a, to_b)) = (&self.towers[from], &self.towers[to]);
            for (source, target) in [(from_a, to_a), (from_b, to_b)] {
                target.ws.shallow_clone().copy_(&source.ws);
                if let (Some(source), Some(target)) = (&source.bs, &target.bs) {
                    target.shallow_clone().copy_(source);
                }
            }
        });
    }

    /// Logits `[n, tasks]` of the plain forward pass on the concatenated input.
    pub fn forward_t(&self, x: &Inputs, train: bool) -> Tensor {
        let first = self.user_in.forward(&self.user.input(&x.user_cat, &x.user_dense))
            + self.campaign_in.forward(&self.campaign.input(&x.campaign_cat, &x.campaign_dense))
            + self.pair_in.forward(&self.pair.normalise(&x.pair));
        let shared = self.norm.forward_t(&first, train).relu();
        let shared = self.hidden.forward(&shared).relu();
        self.heads(&shared, None)
    }

    /// Tower logits for the shared representation `[n, hidden]`: all tasks, or
    /// only `tasks` (indices), in that order.
    pub fn heads(&self, shared: &Tensor, tasks: Option<&[usize]>) -> Tensor {
        let tower = |(a, b): &(nn::Linear, nn::Linear)| b.forward(&a.forward(shared).relu());
        let outputs: Vec<Tensor> = match tasks {
            None => self.towers.iter().map(tower).collect(),
            Some(tasks) => tasks.iter().map(|&t| tower(&self.towers[t])).collect(),
        };
        Tensor::cat(&outputs, 1)
    }

    /// Probabilities `[n, tasks]` at inference (batch norm in eval mode, no grad).
    pub fn predict(&self, x: &Inputs) -> Tensor {
        tch::no_grad(|| self.forward_t(x, false).sigmoid())
    }

    /// The network in factorised form for scoring: the first layer split per
    /// input part with inference-time batch norm folded in, so that
    /// `relu(user(u) + campaign(c) + pair(p))` is the encoder's first block on
    /// `[u; c; p]`. Shares this network's tensors (same thread only).
    pub fn factorised(&self) -> Factorised {
        tch::no_grad(|| {
            let gamma = self.norm.ws.as_ref().expect("affine batch norm");
            let beta = self.norm.bs.as_ref().expect("affine batch norm");
            let scale = gamma / (&self.norm.running_var + BATCH_NORM_EPS).sqrt();
            let shift = beta - &self.norm.running_mean * &scale;
            let fold = |linear: &nn::Linear| &linear.ws * scale.unsqueeze(1);
            let linear = |l: &nn::Linear| (l.ws.shallow_clone(), l.bs.as_ref().map(Tensor::shallow_clone));
            let shallow =
                |l: &nn::Linear| nn::Linear { ws: l.ws.shallow_clone(), bs: l.bs.as_ref().map(Tensor::shallow_clone) };
            Factorised {
                user: self.user.shallow_clone(),
                campaign: self.campaign.shallow_clone(),
                pair: self.pair.shallow_clone(),
                user_in: fold(&self.user_in),
                campaign_in: fold(&self.campaign_in),
                pair_in: fold(&self.pair_in).transpose(0, 1).contiguous(),
                bias: self.campaign_in.bs.as_ref().expect("campaign_in has the bias") * &scale + shift,
                hidden: linear(&self.hidden),
                towers: self.towers.iter().map(|(a, b)| (shallow(a), shallow(b))).collect(),
            }
        })
    }
}

type Layer = (Tensor, Option<Tensor>);

/// The network rearranged for factorised scoring (see [`Network::factorised`]).
pub struct Factorised {
    user: Part,
    campaign: Part,
    pair: Part,
    user_in: Tensor,
    campaign_in: Tensor,
    /// Transposed, `[pair features, width]`.
    pair_in: Tensor,
    bias: Tensor,
    hidden: Layer,
    towers: Vec<(nn::Linear, nn::Linear)>,
}

/// The layers after the first, as the fused kernel takes them.
pub struct PairLayers {
    /// `[hidden, width]` and `[hidden]`.
    pub hidden_weight: Tensor,
    pub hidden_bias: Tensor,
    pub towers: Vec<TowerWeights>,
}

/// One task's tower: `[tower, hidden]`, `[tower]`, then its last unit.
pub struct TowerWeights {
    pub first_weight: Tensor,
    pub first_bias: Tensor,
    pub second_weight: Vec<f32>,
    pub second_bias: f32,
}

/// The pair part of the first layer as an affine map of the raw pair
/// features: `Σ_k p_k · scale[k] + shift` (normalisation folded in).
pub struct PairTerms {
    /// `[pair features][width]`.
    pub scale: Vec<Vec<f32>>,
    pub shift: Vec<f32>,
}

/// A float tensor's values, row-major.
pub(super) fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.contiguous().view([-1]).to_kind(Kind::Float)).expect("float tensor")
}

impl Factorised {
    /// `[n, width]` user parts of the first layer.
    pub fn user_part(&self, cat: &Tensor, dense: &Tensor) -> Tensor {
        self.user.input(cat, dense).linear::<Tensor>(&self.user_in, None)
    }

    /// `[m, width]` campaign parts, including the layer's bias and batch-norm shift.
    pub fn campaign_part(&self, cat: &Tensor, dense: &Tensor) -> Tensor {
        self.campaign.input(cat, dense).linear::<Tensor>(&self.campaign_in, None) + &self.bias
    }

    /// The pair part of the first layer in closed form.
    pub fn pair_terms(&self) -> PairTerms {
        tch::no_grad(|| {
            let scale = &self.pair_in / self.pair.std.unsqueeze(1);
            let shift = -(self.pair.mean.unsqueeze(1) * &scale).sum_dim_intlist(0, false, Kind::Float);
            let features = scale.size()[0];
            PairTerms { scale: (0..features).map(|k| floats(&scale.get(k))).collect(), shift: floats(&shift) }
        })
    }

    /// First-layer activations `[n, width]` (after the ReLU) of whole inputs.
    pub fn first_layer(&self, x: &Inputs) -> Tensor {
        tch::no_grad(|| {
            let first = self.user_part(&x.user_cat, &x.user_dense)
                + self.campaign_part(&x.campaign_cat, &x.campaign_dense)
                + self.pair.normalise(&x.pair).matmul(&self.pair_in);
            first.relu()
        })
    }

    /// The hidden layer and the towers.
    pub fn layers(&self) -> PairLayers {
        tch::no_grad(|| {
            let bias = |l: &nn::Linear| l.bs.as_ref().expect("tower layers have biases").copy();
            PairLayers {
                hidden_weight: self.hidden.0.copy(),
                hidden_bias: self.hidden.1.as_ref().expect("the hidden layer has a bias").copy(),
                towers: self
                    .towers
                    .iter()
                    .map(|(a, b)| TowerWeights {
                        first_weight: a.ws.copy(),
                        first_bias: bias(a),
                        second_weight: floats(&b.ws),
                        second_bias: floats(&bias(b))[0],
                    })
                    .collect(),
            }
        })
    }
}
