#!/usr/bin/env python3
"""Export a native `audience` model artifact as TorchScript.

Reads MODEL_DIR/model.json and MODEL_DIR/model.safetensors (written by
`audience train`), rebuilds the same network in PyTorch, scripts it and writes
OUT_DIR/model.pt and OUT_DIR/features.json: a TorchScript artifact that
`audience` loads for scoring (src/model/torchscript.rs, docs/model.md).

    python3 scripts/export_torchscript.py MODEL_DIR OUT_DIR

Needs `torch` and `safetensors` importable; exits 3 (and says so) when they
are not, so callers can skip.
"""

import json
import sys
from pathlib import Path

try:
    import torch
    from torch import nn
    from safetensors.torch import load_file
except ImportError as error:  # pragma: no cover - depends on the machine
    print(f"skipped: {error}", file=sys.stderr)
    sys.exit(3)


class Part(nn.Module):
    """Summed slot embeddings per categorical feature, then normalised dense values."""

    def __init__(self, side):
        super().__init__()
        self.slots = [c["slots"] for c in side["categorical"]]
        self.embeddings = nn.ModuleList(
            nn.Embedding(c["buckets"] + 1, c["dim"]) for c in side["categorical"]
        )
        self.register_buffer("mean", torch.tensor([d["mean"] for d in side["dense"]]))
        self.register_buffer("std", torch.tensor([d["std"] for d in side["dense"]]))

    def forward(self, cat: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        pieces = []
        offset = 0
        for i, embedding in enumerate(self.embeddings):
            slots = self.slots[i]
            pieces.append(embedding(cat[:, offset : offset + slots]).sum(1))
            offset += slots
        pieces.append((dense - self.mean) / self.std)
        return torch.cat(pieces, 1)


class Network(nn.Module):
    def __init__(self, manifest):
        super().__init__()
        features, arch = manifest["features"], manifest["architecture"]
        width, hidden = arch["encoder"]
        self.user = Part(features["user"])
        self.campaign = Part(features["campaign"])
        self.register_buffer("pair_mean", torch.tensor([d["mean"] for d in features["pair"]["dense"]]))
        self.register_buffer("pair_std", torch.tensor([d["std"] for d in features["pair"]["dense"]]))
        self.user_in = nn.Linear(self.width(features["user"]), width, bias=False)
        self.campaign_in = nn.Linear(self.width(features["campaign"]), width)
        self.pair_in = nn.Linear(len(features["pair"]["dense"]), width, bias=False)
        self.norm = nn.BatchNorm1d(width, eps=1e-5)
        self.hidden = nn.Linear(width, hidden)
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, arch["tower"]), nn.ReLU(), nn.Linear(arch["tower"], 1))
            for _ in arch["tasks"]
        )

    @staticmethod
    def width(side):
        return sum(c["dim"] for c in side["categorical"]) + len(side["dense"])

    def forward(self, user_cat, user_dense, campaign_cat, campaign_dense, pair):
        first = (
            self.user_in(self.user(user_cat, user_dense))
            + self.campaign_in(self.campaign(campaign_cat, campaign_dense))
            + self.pair_in((pair - self.pair_mean) / self.pair_std)
        )
        shared = torch.relu(self.hidden(torch.relu(self.norm(first))))
        return torch.sigmoid(torch.cat([tower(shared) for tower in self.towers], 1))


def load_weights(network, manifest, weights):
    """Maps tch variable names (`user/country/weight`, `towers/...`) onto the module."""
    state = {}
    for side in ("user", "campaign"):
        for i, c in enumerate(manifest["features"][side]["categorical"]):
            state[f"{side}.embeddings.{i}.weight"] = weights[f"{side}.{c['name']}.weight"]
    for layer in ("user_in", "campaign_in", "pair_in", "hidden"):
        state[f"{layer}.weight"] = weights[f"{layer}.weight"]
        if f"{layer}.bias" in weights:
            state[f"{layer}.bias"] = weights[f"{layer}.bias"]
    for name in ("weight", "bias", "running_mean", "running_var"):
        state[f"norm.{name}"] = weights[f"norm.{name}"]
    for t, task in enumerate(manifest["architecture"]["tasks"]):
        for layer, index in (("0", 0), ("1", 2)):
            for name in ("weight", "bias"):
                state[f"towers.{t}.{index}.{name}"] = weights[f"{task}.{layer}.{name}"]
    missing, unexpected = network.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith(("mean", "std", "num_batches_tracked"))]
    if missing or unexpected:
        raise SystemExit(f"weights do not match model.json: missing {missing}, unexpected {unexpected}")


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    model_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    manifest = json.loads((model_dir / "model.json").read_text())
    weights = load_file(str(model_dir / "model.safetensors"))
    network = Network(manifest)
    load_weights(network, manifest, weights)
    network.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.jit.script(network).save(str(out_dir / "model.pt"))
    (out_dir / "features.json").write_text(json.dumps(manifest["features"], indent=2))
    print(out_dir)


if __name__ == "__main__":
    main()
