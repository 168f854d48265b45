//! The network's per-pair layers on fixed-size tiles, the arithmetic of the
//! fused scoring operator (docs/design.md §5): a tile holds the first
//! layer's activations of up to [`Kernel::rows`] pairs that share one task
//! head; running it takes the hidden layer and that head's tower through two
//! libtorch GEMMs and the tower's last unit here, and yields one probability
//! per pair.
//!
//! Every GEMM has the same shape (a partial tile is padded with zero rows), so
//! a pair's probability does not depend on which pairs share its tile: the
//! partitions of a run, however users fall into them, compute every pair
//! bit-identically (tested). Precision is fp32, or bf16 for the two GEMMs
//! (`scoring.precision = "bf16"`, CPUs with AVX-512 BF16 only; oneDNN then
//! uses AMX where the CPU has it). Row passes written here are compiled for
//! AVX-512 and AVX2 and picked at run time.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::network::{TowerWeights, floats};

mod rows;

/// The number format of the per-pair GEMMs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Single precision throughout.
    #[default]
    Fp32,
    /// bfloat16 GEMMs (AVX-512 BF16 CPUs only; AMX where present).
    Bf16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Whether this CPU can run it: bf16 needs AVX-512 BF16 (`avx512_bf16`).
    pub fn check(self) -> Result<(), PrecisionError> {
        match self {
            Precision::Fp32 => Ok(()),
            Precision::Bf16 if bf16_supported() => Ok(()),
            Precision::Bf16 => Err(PrecisionError { cpu: crate::measure::cpu_model() }),
        }
    }

    fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }

    /// Pairs per tile: enough rows that a GEMM runs near its peak, few enough
    /// that the open tiles (one per head in use) stay in the core's L2
    /// (measured on 1M users: fp32 512–1024 rows ≈ 1.3× the rate of 2048–4096;
    /// bf16 within noise from 2048 to 8192 rows).
    fn tile_rows(self) -> usize {
        match self {
            Precision::Fp32 => 1024,
            Precision::Bf16 => 2048,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Precision, String> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("precision \"{other}\": expected \"fp32\" or \"bf16\"")),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "scoring.precision = \"bf16\" needs a CPU with AVX-512 BF16 instructions (avx512_bf16); this one has none ({cpu}): use \"fp32\""
)]
pub struct PrecisionError {
    pub cpu: String,
}

/// Whether this CPU has AVX-512 BF16.
pub fn bf16_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The vector instructions the row passes here use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Baseline,
}

impl Isa {
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Baseline => "baseline",
        }
    }
}

/// A contiguous CPU tensor whose elements this module reads and writes
/// directly. Safety rests on three facts kept here: the tensor is
/// contiguous with `len` elements of the element type used, this struct
/// holds its only handle, and libtorch only touches it inside calls made
/// from this thread, never while a slice of it is alive.
struct Slab {
    tensor: Tensor,
    /// The tensor's storage (it never moves: nothing resizes the tensor).
    data: *mut std::ffi::c_void,
    len: usize,
    kind: Kind,
}

// SAFETY: the pointer is only dereferenced through `&mut self`, and the
// tensor it points into moves with the slab.
unsafe impl Send for Slab {}

impl Slab {
    fn zeros(rows: usize, cols: usize, kind: Kind) -> Slab {
        let tensor = Tensor::zeros([rows as i64, cols as i64], (kind, Device::Cpu));
        Slab { data: tensor.data_ptr(), tensor, len: rows * cols, kind }
    }

    fn f32_mut(&mut self) -> &mut [f32] {
        assert_eq!(self.kind, Kind::Float);
        // SAFETY: see the type's comment.
        unsafe { std::slice::from_raw_parts_mut(self.data as *mut f32, self.len) }
    }

    fn u16_mut(&mut self) -> &mut [u16] {
        assert_eq!(self.kind, Kind::BFloat16);
        // SAFETY: see the type's comment; bf16 is 16 bits.
        unsafe { std::slice::from_raw_parts_mut(self.data as *mut u16, self.len) }
    }
}

/// First-layer activations of up to `rows` pairs for one head, with what
/// identifies each pair (a campaign index and a user id).
pub struct Tile {
    first: Slab,
    width: usize,
    rows: usize,
    precision: Precision,
    isa: Isa,
    /// Filled rows.
    pub len: usize,
    pub campaign: Vec<u32>,
    pub user_id: Vec<i64>,
    /// A row of zeros: the campaign term and direction of rows pushed as
    /// ready activations.
    zeros: Vec<f32>,
}

impl Tile {
    pub fn is_full(&self) -> bool {
        self.len == self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the pair `relu(user + campaign + affinity × direction)`.
    pub fn push_pair(
        &mut self,
        user: &[f32],
        campaign: &[f32],
        affinity: f32,
        direction: &[f32],
        campaign_index: u32,
        user_id: i64,
    ) {
        debug_assert!(!self.is_full());
        let (w, row, isa) = (self.width, self.len, self.isa);
        match self.precision {
            Precision::Fp32 => {
                let out = &mut self.first.f32_mut()[row * w..(row + 1) * w];
                rows::first_f32(isa, out, user, campaign, affinity, direction);
            }
            Precision::Bf16 => {
                let out = &mut self.first.u16_mut()[row * w..(row + 1) * w];
                rows::first_bf16(isa, out, user, campaign, affinity, direction);
            }
        }
        self.campaign.push(campaign_index);
        self.user_id.push(user_id);
        self.len += 1;
    }

    /// Appends a row of first-layer activations computed elsewhere (already
    /// through the ReLU), in f32.
    pub fn push_activations(&mut self, activations: &[f32]) {
        let zeros = std::mem::take(&mut self.zeros);
        self.push_pair(activations, &zeros, 0.0, &zeros, 0, 0);
        self.zeros = zeros;
    }

    fn clear(&mut self) {
        self.len = 0;
        self.campaign.clear();
        self.user_id.clear();
    }

    /// Zeroes the rows after the filled ones (padding of a partial tile).
    fn pad(&mut self) {
        let from = self.len * self.width;
        match self.precision {
            Precision::Fp32 => self.first.f32_mut()[from..].fill(0.0),
            Precision::Bf16 => self.first.u16_mut()[from..].fill(0),
        }
    }
}

/// The hidden layer and the towers in the tile's precision, and the output
/// buffers of a tile's GEMMs.
pub struct Kernel {
    precision: Precision,
    isa: Isa,
    rows: usize,
    width: usize,
    /// `[width, hidden]`, and the bias in f32.
    hidden: (Tensor, Vec<f32>),
    /// Per task: `[hidden, tower]`, the bias and the last unit in f32.
    towers: Vec<(Tensor, Vec<f32>, Vec<f32>, f32)>,
    hidden_out: Slab,
    tower_out: Slab,
    tower: usize,
    probabilities: Vec<f32>,
}

impl Kernel {
    /// A kernel over the layers of a factorised network.
    pub fn new(layers: &super::network::PairLayers, precision: Precision) -> Result<Kernel, PrecisionError> {
        precision.check()?;
        let kind = precision.kind();
        let rows = precision.tile_rows();
        let width = layers.hidden_weight.size()[1] as usize;
        let hidden = layers.hidden_weight.size()[0];
        let tower = layers.towers[0].first_weight.size()[0] as usize;
        let towers = layers
            .towers
            .iter()
            .map(|t: &TowerWeights| {
                (
                    t.first_weight.transpose(0, 1).contiguous().to_kind(kind),
                    floats(&t.first_bias),
                    t.second_weight.clone(),
                    t.second_bias,
                )
            })
            .collect();
        Ok(Kernel {
            precision,
            isa: Isa::detect(),
            rows,
            width,
            hidden: (layers.hidden_weight.transpose(0, 1).contiguous().to_kind(kind), floats(&layers.hidden_bias)),
            towers,
            hidden_out: Slab::zeros(rows, hidden as usize, kind),
            tower_out: Slab::zeros(rows, tower, kind),
            tower,
            probabilities: vec![0.0; rows],
        })
    }

    /// Pairs per tile.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// An empty tile for this kernel.
    pub fn tile(&self) -> Tile {
        Tile {
            first: Slab::zeros(self.rows, self.width, self.precision.kind()),
            width: self.width,
            rows: self.rows,
            precision: self.precision,
            isa: self.isa,
            len: 0,
            campaign: Vec::with_capacity(self.rows),
            user_id: Vec::with_capacity(self.rows),
            zeros: vec![0.0; self.width],
        }
    }

    /// The probabilities of task `head` for the tile's pairs (one per filled
    /// row); `take` sees them with the tile's pair ids, then the tile is empty.
    pub fn run(&mut self, head: usize, tile: &mut Tile, take: impl FnOnce(&[f32], &[u32], &[i64])) {
        if tile.is_empty() {
            return;
        }
        if !tile.is_full() {
            tile.pad();
        }
        // Products without bias (a bias in the GEMM call costs libtorch a
        // broadcast copy); bias and ReLU in one pass here.
        let (w1, b1) = &self.hidden;
        let (w2, b2, last, last_bias) = &self.towers[head];
        let isa = self.isa;
        let _ = tile.first.tensor.matmul_out(&self.hidden_out.tensor, w1);
        match self.precision {
            Precision::Fp32 => rows::bias_relu_f32(isa, self.hidden_out.f32_mut(), b1),
            Precision::Bf16 => rows::bias_relu_bf16(isa, self.hidden_out.u16_mut(), b1),
        }
        let _ = self.hidden_out.tensor.matmul_out(&self.tower_out.tensor, w2);
        let n = tile.len;
        let tower = self.tower;
        let out = &mut self.probabilities[..n];
        match self.precision {
            Precision::Fp32 => rows::last_f32(isa, out, &self.tower_out.f32_mut()[..n * tower], b2, last, *last_bias),
            Precision::Bf16 => rows::last_bf16(isa, out, &self.tower_out.u16_mut()[..n * tower], b2, last, *last_bias),
        }
        take(&self.probabilities[..n], &tile.campaign, &tile.user_id);
        tile.clear();
    }

    /// Probabilities `[n, tasks]` (row-major) of first-layer activations
    /// `[n, width]` (f32, after the ReLU), every head run on every row: the
    /// offline evaluation of a precision.
    pub fn all_heads(&mut self, activations: &[f32]) -> Vec<f32> {
        let (width, tasks) = (self.width, self.towers.len());
        let n = activations.len() / width;
        let mut out = vec![0.0; n * tasks];
        let mut tile = self.tile();
        for head in 0..tasks {
            let mut start = 0;
            for (i, row) in activations.chunks_exact(width).enumerate() {
                tile.push_activations(row);
                if tile.is_full() || i + 1 == n {
                    self.run(head, &mut tile, |p, _, _| {
                        for (k, &p) in p.iter().enumerate() {
                            out[(start + k) * tasks + head] = p;
                        }
                    });
                    start = i + 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::model::features::FeatureSpec;
    use crate::model::network::Architecture;

    /// First-layer activations: non-negative, some zero, as after a ReLU.
    fn activations(rows: usize, width: usize) -> Vec<f32> {
        (0..rows * width).map(|i| (((i * 7919) % 1000) as f32 / 500.0 - 0.6).max(0.0)).collect()
    }

    fn probabilities_in(precision: Precision) {
        tch::manual_seed(3);
        let model = Model::new(FeatureSpec::default(), Architecture::default());
        let layers = model.network.factorised().layers();
        let mut kernel = Kernel::new(&layers, precision).unwrap();
        let width = 256;
        let n = kernel.rows() + kernel.rows() / 2;
        let all = activations(n, width);
        let together = kernel.all_heads(&all);
        // The same rows in another order and other company, and alone in a
        // padded tile: every probability is the same to the bit.
        let tail = &all[(n - 7) * width..];
        let alone = kernel.all_heads(tail);
        assert_eq!(&together[(n - 7) * 5..], &alone[..], "{precision:?}: a row's result depends on its tile");
        let mut reversed: Vec<f32> = Vec::with_capacity(all.len());
        for row in all.chunks_exact(width).rev() {
            reversed.extend_from_slice(row);
        }
        let backwards = kernel.all_heads(&reversed);
        for (i, row) in together.chunks_exact(5).enumerate() {
            assert_eq!(row, &backwards[(n - 1 - i) * 5..(n - i) * 5], "{precision:?}: row {i}");
        }
    }

    #[test]
    fn a_pairs_probability_does_not_depend_on_its_tile() {
        probabilities_in(Precision::Fp32);
        if bf16_supported() {
            probabilities_in(Precision::Bf16);
        } else {
            tch::manual_seed(3);
            let model = Model::new(FeatureSpec::default(), Architecture::default());
            let err = Kernel::new(&model.network.factorised().layers(), Precision::Bf16).err().expect("bf16 refused");
            assert!(err.to_string().contains("avx512_bf16"), "{err}");
        }
    }

    #[test]
    fn precision_parses_from_the_config_words() {
        assert_eq!("bf16".parse::<Precision>(), Ok(Precision::Bf16));
        assert_eq!("fp32".parse::<Precision>(), Ok(Precision::Fp32));
        assert!("fp16".parse::<Precision>().unwrap_err().contains("fp16"));
    }
}
