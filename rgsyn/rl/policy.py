"""The trainable policy: LoRA adapters (peft) on the DiT's attention + the label table, or full
fine-tuning; the frozen cold-start policy for the KL term without a second model copy; and the RL
checkpoint format.

LoRA: the reference is the same module with its adapters disabled and the cold-start table swapped
in (a C x D table module put into every block for the call). Full fine-tuning: the other initial
tensors are applied with torch.func.functional_call — again one module. The table is never passed to
functional_call: it is shared by every block, and functional_call does not put a tied parameter back. A checkpoint holds peft's adapter state dict
in rgsyn.generator.adapters' format (peft's adapter state dict plus the label table), which loading for
sampling merges into the base weights, so a fine-tuned generator costs what the cold start costs.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch.func import functional_call

from rgsyn.generator.adapters import adapter_state, make_trainable
from rgsyn.generator.dit import label_tables
from rgsyn.generator.train import trainable

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # checkpoints written before rl.lora_targets existed


class Policy:
    def __init__(self, model: torch.nn.Module, lora_rank: int, full_finetune: bool, seed: int,
                 lora_targets: list[str]):
        self.model = model
        self.full = full_finetune
        make_trainable(model, lora_rank, full_finetune, lora_targets, seed)
        table = label_tables(model)[0]
        self.params = trainable(model)
        # what the reference policy needs beyond "adapters off": the initial values of trained base tensors
        self.ref_table = copy.deepcopy(table).requires_grad_(False)
        self.ref = {k: v.detach().clone() for k, v in self.params.items()
                    if "lora_" not in k and "class_embedder" not in k}

    def param_groups(self, lr: float, table_lr: float) -> list[dict]:
        """Optimiser groups: the label table (one row per identity, each row trained only when its identity
        is rolled out) at `table_lr`, everything else at `lr`."""
        table = label_tables(self.model)[0].embedding_table.weight
        rest = [v for v in self.params.values() if v is not table]
        return [{"params": rest, "lr": lr}, {"params": [table], "lr": table_lr}]

    def lora_layers(self):
        return [m for m in self.model.modules() if isinstance(m, BaseTunerLayer)]

    @contextmanager
    def reference(self):
        """Run the model as the cold-start policy inside this block (no grad)."""
        layers = self.lora_layers()
        blocks = [blk.norm1.emb for blk in self.model.transformer_blocks]
        live = blocks[0].class_embedder
        for m in layers:
            m.enable_adapters(False)
        for b in blocks:
            b.class_embedder = self.ref_table
        try:
            with torch.no_grad():
                yield ((lambda *a, **kw: functional_call(self.model, self.ref, a, kw, strict=False)) if self.ref
                       else self.model)
        finally:
            for m in layers:
                m.enable_adapters(True)
            for b in blocks:
                b.class_embedder = live

    def state(self) -> dict[str, torch.Tensor]:
        """What an RL checkpoint stores (rgsyn.generator.adapters.adapter_state)."""
        return adapter_state(self.model, self.full)
