"""Decoder LLMs (Hugging Face transformers) through the same contract as vision models.

Unit i is decoder layer i (0-based); its output is the hidden state that layer returns (the input of layer
i + 1, before the final norm). `remove_decoder_layers` removes layers for real; scoring views bypass them.
"""

from sglp.kinds.causal_lm.layers import decoder_layers, remove_decoder_layers

__all__ = ["decoder_layers", "remove_decoder_layers"]
