from pathlib import Path

import pytest
import torch

from conftest import REPO
from gemma_embed.config import ConfigError, Phase1Config, Phase3Config, load_config, save_config


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_yaml_and_command_line_overrides(tmp_path):
    path = write(tmp_path, "output_dir: out\ndata: text.txt\nlr: 1.0e-4\nmodel: {attention: bidirectional}\n")
    cfg, args = load_config(Phase1Config, ["--config", path, "--lr", "3e-5", "--batch_size", "8", "--resume"])
    assert cfg.lr == 3e-5 and cfg.batch_size == 8 and cfg.model == {"attention": "bidirectional"} and args.resume
    save_config(cfg, tmp_path / "resolved.yaml")  # the resolved config saved beside the output loads back
    again, _ = load_config(Phase1Config, ["--config", str(tmp_path / "resolved.yaml")])
    assert again == cfg
    with pytest.raises(ConfigError, match="written for Phase1Config"):
        load_config(Phase3Config, ["--config", str(tmp_path / "resolved.yaml")])


def test_a_model_override_merges_and_an_unknown_model_field_is_refused_naming_it(tmp_path):
    from gemma_embed.config import DecoderConfig

    path = write(tmp_path, "output_dir: out\ndata: text.txt\nmodel: {attention: bidirectional, lora_r: 8}\n")
    cfg, _ = load_config(Phase1Config, ["--config", path, "--model", "{lora_r: 4}"])
    assert cfg.model == {"attention": "bidirectional", "lora_r": 4}  # merged, not replaced
    for argv in (["--model", "{lora_rr: 4}"], []):
        text = "output_dir: out\ndata: text.txt\nmodel: {lora_rr: 4}\n" if not argv else None
        with pytest.raises(ConfigError, match=r"field 'model' has unknown field\(s\) \['lora_rr'\]; GemmaEmbedConfig's"):
            load_config(Phase1Config, ["--config", write(tmp_path, text) if text else path, *argv])
    decoder = write(tmp_path, "output_dir: out\ndata: q.db\nencoder: minilm\nmodel: {prefix_lenght: 4}\n")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['prefix_lenght'\]; GemmaEmbedDecoderConfig's"):
        load_config(DecoderConfig, ["--config", decoder])


def test_phase3_fields(tmp_path):
    cfg, _ = load_config(Phase3Config, ["--output_dir", "o", "--data", "q.db", "--table", "t", "--column", "c"])
    assert (cfg.table, cfg.column) == ("t", "c")


@pytest.mark.parametrize(
    "text, message",
    [
        ("output_dir: o\ndata: d\nlearning_rate: 1\n", "unknown field(s) ['learning_rate']"),
        ("output_dir: o\ndata: d\nbatch_size: 0\n", "'batch_size' must be a positive integer"),
        ("output_dir: o\ndata: d\nbatch_size: many\n", "'batch_size' must be int"),
        ("output_dir: o\ndata: d\nmixed_precision: fp16\n", "fp16, which Gemma 3 overflows in"),
        ("output_dir: o\ndata: d\nlr: -1\n", "'lr' must be > 0"),
        ("output_dir: o\ndata: d\nmodel: {pooling: max}\n", "pooling must be one of"),
        ("output_dir: o\ndata: d\ninit_from: p1\nmodel: {lora_r: 4}\n", "cannot be combined with init_from"),
        ("data: d\n", "'output_dir' is required"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_config_errors_name_the_file_and_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=None) as err:
        load_config(Phase1Config, ["--config", path])
    assert message in str(err.value) and path in str(err.value)


def test_unknown_command_line_option():
    with pytest.raises(ConfigError, match="unknown option"):
        load_config(Phase1Config, ["--output_dir", "o", "--data", "d", "--learning_rate", "1"])


SHIPPED = sorted(str(p.relative_to(REPO)) for p in (REPO / "train/configs").rglob("*.yaml"))


def config_class(path: str):
    """The config class of a shipped config, by its name (decoder_long.yaml is a decoder's)."""
    from gemma_embed.config import CorrectorConfig, DecoderConfig, Phase2Config

    kinds = {"phase1": Phase1Config, "phase2": Phase2Config, "phase3": Phase3Config, "decoder": DecoderConfig,
             "corrector": CorrectorConfig}
    return kinds[next(k for k in kinds if Path(path).stem.startswith(k))]


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_configs_load(path):
    cfg, _ = load_config(config_class(path), ["--config", str(REPO / path)])
    assert cfg.output_dir.startswith("runs/")


def test_decoder_config_fields_and_checks(tmp_path):
    from gemma_embed.config import DecoderConfig

    cfg, _ = load_config(DecoderConfig, ["--config", str(REPO / "train/configs/smoke/decoder.yaml"),
                                         "--model", "{prefix_length: 2, noise_std: 0.1}"])
    # merged into the smoke config's model: {prefix_length: 4, lora_r: 4, lora_alpha: 8}
    assert cfg.encoder == "raw:tiny" and cfg.model == {"prefix_length": 2, "lora_r": 4, "lora_alpha": 8, "noise_std": 0.1}
    assert not hasattr(cfg, "temperature") and not hasattr(cfg, "eval_sts")  # the phases' fields are theirs
    with pytest.raises(ConfigError, match="field 'encoder' is required"):
        load_config(DecoderConfig, ["--config", str(REPO / "train/configs/smoke/decoder.yaml"), "--encoder", ""])
    with pytest.raises(ConfigError, match="not a valid GemmaEmbedDecoderConfig: .*prefix_length"):
        load_config(DecoderConfig, ["--config", str(REPO / "train/configs/smoke/decoder.yaml"),
                                    "--model", "{prefix_length: 0}"])
    with pytest.raises(ConfigError, match="written for Phase3Config, but this script runs DecoderConfig"):
        load_config(DecoderConfig, ["--config", str(_saved_phase3(tmp_path))])


@pytest.mark.parametrize("field,kept,other", [("keep_last_layers", 0, 2), ("restrict_vocab", True, False),
                                               ("batch_by_length", False, True)])
def test_a_removed_decoder_field_is_read_at_its_old_value_and_refused_at_another(tmp_path, field, kept, other):
    """A decoder or corrector trained before a field was removed still loads (its train_config.yaml holds the value
    every run used); any other value is refused, naming the field."""
    import yaml

    from gemma_embed.config import CorrectorConfig, DecoderConfig

    saved = yaml.safe_load((REPO / "train/configs/smoke/decoder.yaml").read_text())
    for cls, extra in ((DecoderConfig, {}), (CorrectorConfig, {"decoder": "runs/smoke/decoder"})):
        path = tmp_path / f"{cls.__name__}.yaml"
        path.write_text(yaml.safe_dump({**saved, **extra, field: kept}))
        assert not hasattr(load_config(cls, ["--config", str(path)])[0], field)
        path.write_text(yaml.safe_dump({**saved, **extra, field: other}))
        with pytest.raises(ConfigError, match=f"field '{field}' was removed"):
            load_config(cls, ["--config", str(path)])


def _saved_phase3(tmp_path):
    cfg, _ = load_config(Phase3Config, ["--config", str(REPO / "train/configs/smoke/phase3.yaml")])
    save_config(cfg, tmp_path / "train_config.yaml")
    return tmp_path / "train_config.yaml"


def test_the_rate_schedule_warms_up_decays_or_stays_and_delays_the_adapters():
    """linear: transformers' linear schedule with warm-up, factor for factor; constant: 1 after warm-up; a delay
    keeps the adapters at 0 and then warms them up over the same number of steps."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    from gemma_embed.loop import rate_schedule

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = get_linear_schedule_with_warmup(optimizer, 10, 100).lr_lambdas[0]
    linear = rate_schedule(10, 100, "linear")
    assert [linear(s) for s in range(101)] == [reference(s) for s in range(101)]
    constant = rate_schedule(10, 100, "constant")
    assert [constant(s) for s in (0, 5, 10, 50, 99)] == [0.0, 0.5, 1.0, 1.0, 1.0]
    delayed = rate_schedule(10, 100, "linear", delay=20)
    assert [delayed(s) for s in (0, 19, 20, 25, 30)] == [0.0, 0.0, 0.0, 0.5, 1.0]
    assert delayed(99) == pytest.approx(1 / 70) and delayed(100) == 0.0
    with pytest.raises(ConfigError, match="field 'schedule' must be linear or constant"):
        load_config(Phase1Config, ["--output_dir", "o", "--data", "t.txt", "--schedule", "cosine"])
    with pytest.raises(ConfigError, match="field 'adapter_delay' must be >= 0"):
        load_config(Phase1Config, ["--output_dir", "o", "--data", "t.txt", "--adapter_delay", "-1"])


def test_matryoshka_settings_are_parsed_and_checked(tmp_path):
    cfg, _ = load_config(Phase3Config, ["--config", write(tmp_path, "output_dir: o\ndata: q.db\nmatryoshka_dims: 256,128,64\n")])
    assert cfg.matryoshka() == ((256, 1.0), (128, 1.0), (64, 1.0))
    cfg, _ = load_config(Phase3Config, ["--output_dir", "o", "--data", "q.db", "--matryoshka_dims", "128",
                                        "--matryoshka_weights", "2"])
    assert cfg.matryoshka() == ((128, 2.0),)
    assert load_config(Phase3Config, ["--output_dir", "o", "--data", "q.db"])[0].matryoshka() == ()
    for extra, message in ((["--matryoshka_dims", "256,256"], "distinct positive sizes"),
                           (["--matryoshka_dims", "256,x"], "comma-separated numbers"),
                           (["--matryoshka_dims", "256,128", "--matryoshka_weights", "1"], "one positive weight per"),
                           (["--matryoshka_weights", "1"], "set without 'matryoshka_dims'")):
        with pytest.raises(ConfigError, match=message):
            load_config(Phase3Config, ["--output_dir", "o", "--data", "q.db", *extra])


def test_an_evaluation_draws_nothing_from_trainings_random_stream():
    """The score during training may consume random numbers (loading an encoder initialises modules, but only when
    its vectors are not cached yet): the steps after it must not depend on that."""
    from types import SimpleNamespace

    import torch

    from gemma_embed.loop import evaluate
    from gemma_embed.precision import resolve

    logged = []
    run = SimpleNamespace(
        task=SimpleNamespace(evaluate=lambda cfg, model, tokenizer: torch.rand(1000).sum().item(), log_key="score"),
        accelerator=SimpleNamespace(device=torch.device("cpu")), precision=resolve("no"), cfg=None, unwrapped=None,
        tokenizer=None, log=SimpleNamespace(write=lambda step, **values: logged.append((step, values))),
        main_only=lambda name, work: work())
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    score = evaluate(run, 0)
    assert torch.equal(torch.rand(4), expected)
    assert 400 < score < 600 and logged[0][0] == 0 and logged[0][1]["score"] == score


def test_a_time_limit_sets_the_steps_to_what_fits_up_to_the_planned_and_ends_the_schedule_at_the_new_last_step():
    """gemma_embed.loop._fit_to_time after the first 10 steps: at 0.1 s a step, 2 s fit 20 steps of the 30 planned,
    and each group's rate (the second delayed by 4 steps) now decays to 0 at step 20; read again later, a slower rate
    cuts further, a faster one gives steps back, never more than were planned; a limit that fits them all changes
    nothing."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from gemma_embed.config import TrainConfig
    from gemma_embed.loop import CALIBRATION_STEPS, _fit_to_time, rate_schedule

    def run_of(limit: float):
        cfg = TrainConfig(output_dir="x", data="y", warmup_steps=2, max_steps=30, max_train_seconds=limit)
        groups = [{"params": [torch.nn.Parameter(torch.zeros(1))]}, {"params": [torch.nn.Parameter(torch.zeros(1))]}]
        optimizer = torch.optim.SGD(groups, lr=1.0)

        def rates(total):
            return [rate_schedule(2, total, "linear", delay=d) for d in (0, 4)]

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rates(30))
        return SimpleNamespace(cfg=cfg, start=0, steps=30, rates=rates, scheduler=scheduler, summary={},
                               accelerator=Accelerator(cpu=True), main=True)

    assert CALIBRATION_STEPS == 10
    run = run_of(2.0)
    _fit_to_time(run, elapsed=1.0, taken=10)
    assert run.steps == 20 and run.summary == {"steps": 20, "planned_steps": 30}
    first, delayed = run.scheduler.lr_lambdas
    assert first(20) == delayed(20) == 0.0 and first(11) == pytest.approx(9 / 18) and delayed(11) == pytest.approx(9 / 14)
    run.steps = 20
    _fit_to_time(run, elapsed=1.5, taken=15)  # still 0.1 s a step: nothing changes
    assert run.steps == 20
    _fit_to_time(run, elapsed=1.8, taken=15)  # 0.12 s a step: 0.2 s left is one more step
    assert run.steps == 16 and run.summary == {"steps": 16, "planned_steps": 30}
    assert run.scheduler.lr_lambdas[0](16) == 0.0
    _fit_to_time(run, elapsed=1.2, taken=15)  # faster again (0.08 s a step): 0.8 s left is 10 more steps
    assert run.steps == 25 and run.summary == {"steps": 25, "planned_steps": 30}
    assert run.scheduler.lr_lambdas[0](25) == 0.0 and run.scheduler.lr_lambdas[0](24) > 0
    _fit_to_time(run, elapsed=0.5, taken=15)  # faster still: never more than the 30 planned
    assert run.steps == 30 and run.summary == {"steps": 30, "planned_steps": 30}
    unhurried = run_of(100.0)
    _fit_to_time(unhurried, elapsed=1.0, taken=10)
    assert unhurried.steps == 30 and unhurried.summary == {} and unhurried.scheduler.lr_lambdas[0](20) > 0


@pytest.mark.parametrize("path", SHIPPED)
def test_gemma_embed_try_runs_every_config_at_a_small_size(path, monkeypatch, capsys):
    from gemma_embed.config import TRY_SIZE

    cls = config_class(path)
    full, _ = load_config(cls, ["--config", str(REPO / path)])
    monkeypatch.setenv("GEMMA_EMBED_TRY", "1")
    small, _ = load_config(cls, ["--config", str(REPO / path)])
    assert "GEMMA_EMBED_TRY is set" in capsys.readouterr().out
    assert small.max_steps == 2 and small.batch_size == min(full.batch_size, 8) and small.max_train_seconds == 0
    assert 0 < small.max_rows <= TRY_SIZE["max_rows"]
    assert getattr(small, "grad_cache_chunk", 0) <= min(getattr(full, "grad_cache_chunk", 0), 4)  # off stays off
    assert (small.lr, small.data, small.model) == (full.lr, full.data, full.model)  # nothing else changes
    monkeypatch.setenv("GEMMA_EMBED_TRY", "0")
    assert load_config(cls, ["--config", str(REPO / path)])[0] == full


def test_gemma_embed_try_evaluates_a_few_held_out_queries_for_a_few_rounds(monkeypatch):
    from gemma_embed.eval.inversion import heldout_sets
    from gemma_embed.recipes import correction_recipe

    queries = str(REPO / "examples/data/queries.tsv")
    assert len(heldout_sets([queries], 200)["queries.tsv"]) == 200
    assert correction_recipe(rounds=10).rounds == 10
    monkeypatch.setenv("GEMMA_EMBED_TRY", "1")
    assert len(heldout_sets([queries], 200)["queries.tsv"]) == 8
    assert correction_recipe(rounds=10).rounds == 2 and correction_recipe(rounds=1).rounds == 1
