"""Finetuning of the converted decoder: LoRA adapters (`lora`), applied
functionally over the Flax params, trained with Optax (`train`)."""
