"""What a fine-tuned DiT stores beside its base weights, and how it is put back: the label table, plus
peft LoRA adapters (`get_peft_model_state_dict`) or every trained tensor. The cold start (when it trains
more than the table, `coldstart.tune`) and RL (`rl.lora_rank`, `rl.full_finetune`) write this format;
loading for sampling merges the adapters into the base weights (peft's `merge_and_unload`), so a tuned
generator samples at the cost of its base model.
"""
from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.lora import LoraModel

from rgsyn.generator.dit import label_tables
from rgsyn.generator.train import trainable

TABLE = "label_table"


def lora_config(rank: int, targets: list[str]) -> LoraConfig:
    return LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets), init_lora_weights=True)


def make_trainable(model: torch.nn.Module, lora_rank: int, full: bool, lora_targets: list[str], seed: int) -> None:
    """Beyond the label table (which stays trainable): every base tensor (`full`), else fresh LoRA
    adapters of `lora_rank` on the modules named by `lora_targets` (B = 0: the model is unchanged)."""
    model.requires_grad_(full)
    if not full:
        torch.manual_seed(seed)  # LoRA A init
        inject_adapter_in_model(lora_config(lora_rank, lora_targets), model)
    label_tables(model)[0].embedding_table.weight.requires_grad_(True)


def adapter_state(model: torch.nn.Module, full: bool) -> dict[str, torch.Tensor]:
    """peft's adapter state + the label table, or every trained tensor (`full`), on the CPU."""
    if full:
        out = dict(trainable(model))
    else:
        out = {**get_peft_model_state_dict(model), TABLE: label_tables(model)[0].embedding_table.weight}
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def load_adapter_state(model: torch.nn.Module, state: dict[str, torch.Tensor], lora_rank: int,
                       full: bool, merge: bool, lora_targets: list[str]) -> torch.nn.Module:
    """Put adapter_state's tensors into a model of the same base. LoRA: inject adapters (merged into the
    base weights and removed when `merge`, as for sampling). Returns the model to use."""
    with torch.no_grad():
        if full:
            params = dict(model.named_parameters())
            for k, v in state.items():
                (label_tables(model)[0].embedding_table.weight if k == TABLE else params[k]).copy_(v)
            return model
        label_tables(model)[0].embedding_table.weight.copy_(state[TABLE])
        tuner = LoraModel(model, lora_config(lora_rank, lora_targets), "default")
        set_peft_model_state_dict(model, {k: v for k, v in state.items() if k != TABLE})
        return tuner.merge_and_unload() if merge else model
