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
            pieces.push(if slots == 1 { vectors.squeeze_dim(1) } else { vectors.sum_dim_intlist(1, false, Kind::Float) });
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
            Factorised {
                user: self.user.shallow_clone(),
                campaign: self.campaign.shallow_clone(),
                pair: self.pair.shallow_clone(),
                user_in: fold(&self.user_in),
                campaign_in: fold(&self.campaign_in),
                pair_in: fold(&self.pair_in).transpose(0, 1).contiguous(),
                bias: self.campaign_in.bs.as_ref().expect("campaign_in has the bias") * &scale + shift,
                hidden: linear(&self.hidden),
                towers: Towers::stack(&self.towers),
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
    /// Transposed, `[pair features, width]`, for `addmm`.
    pair_in: Tensor,
    bias: Tensor,
    hidden: Layer,
    towers: Towers,
}

/// All towers stacked so that every head costs one GEMM together: first
/// layers as one `[tasks × tower, hidden]` matrix, second layers as `[tasks, tower]`.
struct Towers {
    first: Tensor,
    first_bias: Tensor,
    second: Tensor,
    second_bias: Tensor,
    width: i64,
}

impl Towers {
    fn stack(towers: &[(nn::Linear, nn::Linear)]) -> Towers {
        let bias = |l: &nn::Linear| l.bs.as_ref().expect("tower layers have biases").shallow_clone();
        Towers {
            first: Tensor::cat(&towers.iter().map(|(a, _)| a.ws.shallow_clone()).collect::<Vec<_>>(), 0),
            first_bias: Tensor::cat(&towers.iter().map(|(a, _)| bias(a)).collect::<Vec<_>>(), 0),
            second: Tensor::cat(&towers.iter().map(|(_, b)| b.ws.shallow_clone()).collect::<Vec<_>>(), 0),
            second_bias: Tensor::cat(&towers.iter().map(|(_, b)| bias(b)).collect::<Vec<_>>(), 0),
            width: towers[0].0.ws.size()[0],
        }
    }

    /// Logits `[k, tasks.len()]`; contiguous runs of tasks share one GEMM.
    fn logits(&self, shared: &Tensor, tasks: &[usize]) -> Tensor {
        let count = self.second.size()[0] as usize;
        if tasks.len() == count && tasks.iter().enumerate().all(|(i, &t)| i == t) {
            return self.block(shared, 0, count as i64);
        }
        Tensor::cat(&tasks.iter().map(|&t| self.block(shared, t as i64, 1)).collect::<Vec<_>>(), 1)
    }

    /// Logits of tasks `from .. from + n`.
    fn block(&self, shared: &Tensor, from: i64, n: i64) -> Tensor {
        let w = self.width;
        let hidden = shared.linear(&self.first.narrow(0, from * w, n * w), Some(&self.first_bias.narrow(0, from * w, n * w))).relu();
        let k = hidden.size()[0];
        (hidden.view([k, n, w]) * self.second.narrow(0, from, n)).sum_dim_intlist(2, false, Kind::Float)
            + self.second_bias.narrow(0, from, n)
    }
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

    /// First-layer pre-activations `[k, width]`: gathered user parts (updated in
    /// place) plus one campaign's part plus the pair part of raw pair features `[k, pair]`.
    pub fn combine(&self, mut user_parts: Tensor, campaign_part: &Tensor, pair: &Tensor) -> Tensor {
        let _ = user_parts.g_add_(campaign_part);
        let _ = user_parts.addmm_(&self.pair.normalise(pair), &self.pair_in);
        user_parts
    }

    /// The shared representation `[k, hidden]` from first-layer pre-activations.
    pub fn shared(&self, mut first: Tensor) -> Tensor {
        let _ = first.relu_();
        let mut shared = first.linear(&self.hidden.0, self.hidden.1.as_ref());
        let _ = shared.relu_();
        shared
    }

    /// Logits `[k, tasks.len()]` of `tasks` from the shared representation.
    pub fn heads(&self, shared: &Tensor, tasks: &[usize]) -> Tensor {
        self.towers.logits(shared, tasks)
    }
}
