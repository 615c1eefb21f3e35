"""`Llama3MedForConditionalGeneration`: frozen tower -> S2 multi-scale features -> connector -> causal LM.

A standard `PreTrainedModel` with `GenerationMixin`: `save_pretrained` / `from_pretrained` with
safetensors, the Auto classes (registered on `import llama3med.model`), `generate` with KV cache and
left padding. Each `<image>` placeholder in `input_ids` has been expanded by the processor into exactly
`config.num_image_tokens` image-token ids; their embeddings are replaced by the image's features.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from llama3med.model.configuration import Llama3MedConfig
from llama3med.model.connector import FeatureStandardizer, build_connector, connector_input_width
from llama3med.model.multiscale import multiscale_encode
from llama3med.model.vision_tower import build_vision_tower
from llama3med.model.weights import WeightLoadingError, check_loading_info, load_state_dict_strict


def distinct_images(pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The distinct images of a batch [B, 3, S, S] -> ([U, 3, S, S], index [B] into them), compared exactly;
    `None` for the index when every image is distinct (nothing to gather back)."""
    if pixel_values.shape[0] < 2:
        return pixel_values, None
    flat = pixel_values.flatten(1)  # [B, 3*S*S]
    # Identical images have identical sums: when all sums differ (the common case) the exact row-wise
    # comparison below, a sort over whole images, is skipped. Equal sums only make images candidates.
    if torch.unique(flat.sum(dim=1)).numel() == flat.shape[0]:
        return pixel_values, None
    distinct, inverse = torch.unique(flat, dim=0, return_inverse=True)  # [U, 3*S*S], [B]
    if distinct.shape[0] == pixel_values.shape[0]:
        return pixel_values, None
    return distinct.view(-1, *pixel_values.shape[1:]), inverse


class Llama3MedPreTrainedModel(PreTrainedModel):
    """Shared settings of Llama3-Med models."""

    config: Llama3MedConfig
    config_class = Llama3MedConfig
    base_model_prefix = ""
    input_modalities = ("image", "text")
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _no_split_modules = ["LlamaDecoderLayer", "CLIPEncoderLayer", "SiglipEncoderLayer"]

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.from_pretrained`, strict: a folder whose weights miss any parameter of the model, or hold
        keys it does not have, raises `WeightLoadingError` naming them (instead of leaving random weights)."""
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
        check_loading_info(info, f"{cls.__name__} from {source}")
        return (model, info) if wants_info else model


class Llama3MedForConditionalGeneration(Llama3MedPreTrainedModel, GenerationMixin):
    """Llama3-Med vision-language model (any HF vision encoder or CNN + any causal LM)."""

    def __init__(self, config: Llama3MedConfig) -> None:
        super().__init__(config)
        self.vision_tower = build_vision_tower(
            config.vision_config, config.vision_feature_layer, config.vision_prefix_tokens
        )
        self.connector = build_connector(
            config.connector_type, config.connector_input_size, config.text_config.hidden_size,
            getattr(config, "connector_input_norm", "none"),  # configs saved before the option have none
        )
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

    # Plumbing the generation and training utilities rely on -----------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.language_model.set_output_embeddings(new_embeddings)

    def use_special_tokens_of(self, tokenizer: Any) -> None:
        """Make the tokenizer's end-of-turn, begin-of-text and pad ids the model's, in the text config (an id list
        that already holds the tokenizer's stays: Llama-3.1 lists several stop ids) and in both generation configs.
        We choose these tokens on purpose (`prepare_tokenizer`); with them in place the `Trainer` finds nothing to
        realign and does not warn about it on every run."""
        text_config = self.config.get_text_config()
        for name in ("eos_token_id", "bos_token_id", "pad_token_id"):
            token, current = getattr(tokenizer, name), getattr(text_config, name, None)
            if token is not None and not (token == current or (isinstance(current, list) and token in current)):
                setattr(text_config, name, token)
            for generation_config in (self.generation_config, self.language_model.generation_config):
                setattr(generation_config, name, token)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear) and any(module is m for m in self.connector.modules()):
            nn.init.normal_(module.weight, std=getattr(self.config.text_config, "initializer_range", 0.02))
            nn.init.zeros_(module.bias)

    # Vision path ----------------------------------------------------------------------------------
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Frozen multi-scale features: pixels [B, 3, S, S] -> [B, g*g, n_scales*C] (no autograd graph).

        These are what the frozen-feature cache stores: they depend only on the image, the encoder and
        the scales, never on trainable weights.
        """
        with torch.no_grad():
            # Questions often share an image (VQA-RAD: 451 questions on 203 images): each distinct image in
            # the batch is encoded once, the dominant cost of a batch on CPU.
            distinct, inverse = distinct_images(pixel_values)  # [U, 3, S, S], [B]
            features = multiscale_encode(
                self.vision_tower, distinct, self.config.scales, self.config.encoder_chunk_size, self.config.tile_size
            )  # [U, g*g, n_scales*C]
            return features if inverse is None else features[inverse]

    def project_image_features(self, image_features: torch.Tensor) -> torch.Tensor:
        """Connector: [B, g*g, n_scales*C] -> [B, g*g, D] in the LLM's dtype."""
        expected = self.config.connector_input_size
        if image_features.shape[-1] != expected:
            raise ValueError(
                f"image features are {image_features.shape[-1]} wide but the connector expects {expected}"
                f" ({len(self.config.scales)} scales x {self.config.vision_hidden_size})"
            )
        dtype = next(self.connector.parameters()).dtype
        return self.connector(image_features.to(dtype))

    @property
    def feature_standardizer(self) -> FeatureStandardizer | None:
        """The connector's input standardisation (`connector_input_norm: standardize`), else None."""
        first = self.connector[0]
        return first if isinstance(first, FeatureStandardizer) else None

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pixels [B, 3, S, S] -> LLM-ready image embeddings [B, g*g, D]."""
        return self.project_image_features(self.encode_images(pixel_values))

    def load_connector(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load connector weights (e.g. stage 1's) after checking they fit this model's vision width."""
        state_dict = {k.removeprefix("connector."): v for k, v in state_dict.items()}
        expected = self.connector.state_dict().keys()
        if state_dict.keys() != expected:
            raise WeightLoadingError(
                f"connector ({self.config.connector_type})", expected - state_dict.keys(), state_dict.keys() - expected
            )
        saved = connector_input_width(state_dict)
        if saved != self.config.connector_input_size:
            raise ValueError(
                f"connector checkpoint expects input width {saved}, but this model's vision path yields"
                f" {self.config.connector_input_size} ({len(self.config.scales)} scales {self.config.scales}"
                f" x encoder width {self.config.vision_hidden_size}); use the scales and encoder it was trained with"
            )
        load_state_dict_strict(self.connector, state_dict, f"connector ({self.config.connector_type})")

    # Forward --------------------------------------------------------------------------------------
    def embed_inputs(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings [B, L, D] with image-token positions replaced by image embeddings.

        `image_features` (precomputed `encode_images` output, e.g. from the feature cache) replaces
        `pixel_values`. Images fill the placeholder runs in reading order across the batch.
        """
        image_mask = input_ids == self.config.image_token_id  # [B, L]
        # Placeholder ids may lie outside the LLM vocabulary: embed a harmless id there, then overwrite.
        embeds = self.get_input_embeddings()(input_ids.masked_fill(image_mask, 0))
        n_slots = int(image_mask.sum())
        if pixel_values is None and image_features is None:
            if n_slots:
                raise ValueError(f"input_ids contain {n_slots} image tokens but no image was given")
            return embeds
        if image_features is None:
            image_features = self.encode_images(pixel_values)
        image_embeds = self.project_image_features(image_features)  # [N_img, g*g, D]
        if n_slots != image_embeds.shape[0] * image_embeds.shape[1]:
            raise ValueError(
                f"input_ids hold {n_slots} image tokens but {image_embeds.shape[0]} image(s) x"
                f" {image_embeds.shape[1]} tokens were encoded; every {self.config.image_token} must be expanded by the"
                " processor"
            )
        return embeds.masked_scatter(image_mask.unsqueeze(-1), image_embeds.to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        image_features: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Causal-LM forward; `labels` use -100 for unsupervised positions (image tokens included).

        In training mode with `labels`, the LM head runs on the supervised positions only and `logits` holds
        their rows [N_supervised, V] (the loss is the same as over all positions). The KV cache travels in
        `kwargs` under the name the installed transformers uses (`cache` from 5.2x, `past_key_values` before),
        so neither name is passed twice."""
        if inputs_embeds is None:
            inputs_embeds = self.embed_inputs(input_ids, pixel_values, image_features)
        if labels is not None and self.training and not use_cache:
            return self._supervised_forward(inputs_embeds, attention_mask, position_ids, labels, **kwargs)
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    def _supervised_forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.LongTensor | None,
        labels: torch.LongTensor,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """The training loss with the LM head on supervised positions only.

        Instruction data supervises the answers alone (image tokens, prompt and padding are -100): on short-answer
        VQA under a tenth of the positions. The LM head [V, D] on every position costs as much as several
        transformer layers (SmolLM2: V = 49,152 against D = 576), forward and backward, for rows the loss drops."""
        causal_lm = self.language_model
        hidden = causal_lm.model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
            **kwargs,
        ).last_hidden_state  # [B, L, D]
        # Position t predicts token t + 1, as transformers' ForCausalLMLoss shifts the labels.
        shifted = nn.functional.pad(labels, (0, 1), value=-100)[:, 1:]  # [B, L]
        supervised = shifted != -100  # [B, L]
        logits = causal_lm.lm_head(hidden[supervised])  # [N, V]
        loss = causal_lm.loss_function(
            logits, None, vocab_size=logits.shape[-1], shift_labels=shifted[supervised], **kwargs
        )
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    def prepare_inputs_for_generation(
        self, *args: Any, cache: Any = None, is_first_iteration: bool = False, **kwargs: Any
    ) -> dict:
        # Image features are only needed for the prefill: later steps read them from the KV cache.
        # (generate drops pixel_values after prefill already; image_features needs the same care.)
        # `cache` is named here so that `generate(cache=...)` accepts a prefilled cache (transformers checks the
        # names this signature and `forward` declare); it goes on as transformers passes it.
        if cache is not None:
            kwargs["cache"] = cache
        image_features = kwargs.pop("image_features", None)
        inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        if is_first_iteration or not kwargs.get("use_cache", True):
            inputs["image_features"] = image_features
        return inputs
