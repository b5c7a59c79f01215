import pytest
from transformers import Gemma3TextConfig

from configuration_gemma_embed import GemmaEmbedConfig
from gemma_embed.backbones import tiny_text_config


def test_defaults_and_text_config_forms():
    text = tiny_text_config(100)
    from_obj = GemmaEmbedConfig(text_config=text)
    from_dict = GemmaEmbedConfig(text_config=text.to_dict())
    assert from_obj.projection_dim == 256 and from_obj.pooling == "mean" and from_obj.normalize
    assert from_obj.lora_target_modules == ["q_proj", "v_proj"] and from_obj.attention == "causal"
    assert isinstance(from_dict.text_config, Gemma3TextConfig)
    assert from_obj.text_config.to_dict() == from_dict.text_config.to_dict()
    # the view dropout and attention mode are written into the backbone config, the one place Gemma reads them
    assert from_obj.text_config.attention_dropout == 0.1
    assert from_obj.text_config.use_bidirectional_attention is False


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_round_trip_keeps_sliding_window(tmp_path, attention):
    config = GemmaEmbedConfig(text_config=tiny_text_config(100, sliding_window=512), attention=attention)
    window = config.text_config.sliding_window
    assert window == (257 if attention == "bidirectional" else 512)
    for _ in range(3):  # Gemma 3 rewrites the window when it reads the bidirectional flag: it must happen once
        config.save_pretrained(tmp_path)
        config = GemmaEmbedConfig.from_pretrained(tmp_path)
        assert config.text_config.sliding_window == window
        assert config.attention == attention


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("pooling", "max", "pooling must be one of"),
        ("head", "conv", "head must be one of"),
        ("head_activation", "swish", "head_activation must be one of"),
        ("attention", "both", "attention must be one of"),
        ("projection_dim", 0, "projection_dim must be a positive integer"),
        ("projection_dim", 2.5, "projection_dim must be a positive integer"),
        ("head_hidden_dim", -1, "head_hidden_dim must be a positive integer"),
        ("lora_r", 0, "lora_r must be a positive integer"),
        ("max_seq_length", True, "max_seq_length must be a positive integer"),
        ("view_dropout", 1.0, "view_dropout must be a number in"),
        ("lora_dropout", -0.1, "lora_dropout must be a number in"),
        ("normalize", "yes", "normalize must be true or false"),
        ("lora_target_modules", "q_proj", "lora_target_modules must be a non-empty list"),
        ("lora_target_modules", [], "lora_target_modules must be a non-empty list"),
        ("query_prompt", 3, "query_prompt must be a string"),
        ("text_config", 5, "text_config must be a dict or a Gemma3TextConfig"),
        ("text_config", {"model_type": "llama"}, "model_type 'gemma3_text'"),
    ],
)
def test_validation_errors(field, value, message):
    with pytest.raises(ValueError, match=message):
        GemmaEmbedConfig(**{field: value})
