"""The trainable policy: LoRA adapters (peft) on the DiT's attention + the label table, or full
fine-tuning; and the frozen cold-start policy for the KL term without a second model copy.

LoRA: the reference is the same module with its adapters disabled and the cold-start table swapped
in (a C x D tensor). Full fine-tuning: the reference is the stored initial tensors, applied with
torch.func.functional_call — again one module.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from torch.func import functional_call

from rgsyn.generator.dit import label_tables
from rgsyn.generator.train import trainable

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


class Policy:
    def __init__(self, model: torch.nn.Module, lora_rank: int, full_finetune: bool, seed: int):
        self.model = model
        self.full = full_finetune
        model.requires_grad_(False)
        if full_finetune:
            model.requires_grad_(True)
        else:
            torch.manual_seed(seed)  # LoRA A init
            inject_adapter_in_model(LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=LORA_TARGETS,
                                               init_lora_weights=True), model)
        label_tables(model)[0].embedding_table.weight.requires_grad_(True)
        self.params = trainable(model)
        # what the reference policy needs beyond "adapters off": the initial values of trained base tensors
        self.ref = {k: v.detach().clone() for k, v in self.params.items() if "lora_" not in k}

    def lora_layers(self):
        return [m for m in self.model.modules() if isinstance(m, BaseTunerLayer)]

    @contextmanager
    def reference(self):
        """Run the model as the cold-start policy inside this block (no grad)."""
        layers = self.lora_layers()
        for m in layers:
            m.enable_adapters(False)
        try:
            with torch.no_grad():
                yield lambda *a, **kw: functional_call(self.model, self.ref, a, kw, strict=False)
        finally:
            for m in layers:
                m.enable_adapters(True)

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """What an RL checkpoint stores: LoRA tensors + the table (or all trained tensors)."""
        return {k: v.detach().cpu().contiguous() for k, v in self.params.items()}
