"""The trainable policy: LoRA adapters (peft) on the DiT's attention + the label table, or full
fine-tuning; the frozen cold-start policy for the KL term without a second model copy; and the RL
checkpoint format.

LoRA: the reference is the same module with its adapters disabled and the cold-start table swapped
in (a C x D table module put into every block for the call). Full fine-tuning: the other initial
tensors are applied with torch.func.functional_call — again one module. The table is never passed to
functional_call: it is shared by every block, and functional_call does not put a tied parameter back. A checkpoint holds peft's adapter state dict
(`get_peft_model_state_dict`) plus the label table; loading for sampling merges the adapters into
the base weights (`merge_and_unload`), so a fine-tuned generator costs what the cold start costs.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.lora import LoraModel
from peft.tuners.tuners_utils import BaseTunerLayer
from torch.func import functional_call

from rgsyn.generator.dit import label_tables
from rgsyn.generator.train import trainable

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # checkpoints written before rl.lora_targets existed
TABLE = "label_table"


def lora_config(rank: int, targets: list[str]) -> LoraConfig:
    return LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets), init_lora_weights=True)


class Policy:
    def __init__(self, model: torch.nn.Module, lora_rank: int, full_finetune: bool, seed: int,
                 lora_targets: list[str]):
        self.model = model
        self.full = full_finetune
        model.requires_grad_(full_finetune)
        if not full_finetune:
            torch.manual_seed(seed)  # LoRA A init
            inject_adapter_in_model(lora_config(lora_rank, lora_targets), model)
        table = label_tables(model)[0]
        table.embedding_table.weight.requires_grad_(True)
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
        """What an RL checkpoint stores: peft's adapter state + the label table (or every trained tensor)."""
        if self.full:
            out = dict(self.params)
        else:
            out = {**get_peft_model_state_dict(self.model),
                   TABLE: label_tables(self.model)[0].embedding_table.weight}
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def load_policy_state(model: torch.nn.Module, state: dict[str, torch.Tensor], lora_rank: int,
                      full_finetune: bool, merge: bool, lora_targets: list[str]) -> torch.nn.Module:
    """Put an RL checkpoint's tensors into a cold-start model. LoRA: inject adapters (merged into the
    base weights and removed when `merge`, as for sampling). Returns the model to use."""
    with torch.no_grad():
        if full_finetune:
            params = dict(model.named_parameters())
            for k, v in state.items():
                params[k].copy_(v)
            return model
        label_tables(model)[0].embedding_table.weight.copy_(state[TABLE])
        tuner = LoraModel(model, lora_config(lora_rank, lora_targets), "default")
        set_peft_model_state_dict(model, {k: v for k, v in state.items() if k != TABLE})
        return tuner.merge_and_unload() if merge else model
