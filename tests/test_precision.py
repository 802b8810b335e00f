"""PRECISION: the frozen pass's precision chosen by measuring (stubbed timings both ways), and
caches that never serve one precision's states to a run of the other."""

import json

import pytest
import torch

from llmrec.cache import cached_hidden
from llmrec.lm import load_lm
from llmrec.precision import MARGIN, MAX_SHIFT, MIN_COSINE, check_precision, choose_precision


@pytest.fixture(scope="module")
def lm():
    return load_lm("tiny-llama")


def _stub(fp32_s, bf16_s, cosine=0.9995, shift=0.05):
    calls = []

    def measure(lm, top_layers, sample, batch_size):
        calls.append(len(sample))
        return {"fp32_s": fp32_s, "bf16_s": bf16_s, "tokens": sum(map(len, sample)),
                "min_cosine": cosine, "max_relative_error": 0.01, "max_shift": shift}
    return measure, calls


ENC = [[1, 2, 3, 4]] * 100


@pytest.mark.parametrize("fp32_s, bf16_s, cosine, shift, expected", [
    (1.66, 1.0, 0.998, 0.096, "bf16"),  # an AMD EPYC with AVX512-BF16 (measured 1.66x)
    (1.0, 3.5, 0.998, 0.096, "fp32"),   # an Intel Xeon without it (3.5x slower)
    (1.05, 1.0, 0.999, 0.01, "fp32"),   # faster, but within the timings' noise
    (2.0, 1.0, 0.90, 0.01, "fp32"),     # faster, but its states do not agree with fp32's
    (2.0, 1.0, 0.999, 0.5, "fp32"),     # states close, but what the model predicts moves
    (2.0, 1.0, 0.999, None, "bf16"),    # an encoder: no next-token distribution to compare
])
def test_auto_takes_bf16_only_where_it_is_clearly_faster_and_agrees(lm, tmp_path, fp32_s, bf16_s, cosine, shift,
                                                                    expected):
    measure, calls = _stub(fp32_s, bf16_s, cosine, shift)
    choice = choose_precision("auto", lm, 1, ENC, measure=measure, folder=tmp_path, verbose=False)
    assert choice.precision == expected and choice.autocast == (expected == "bf16")
    assert calls == [16] and choice.speedup == pytest.approx(fp32_s / bf16_s)
    assert str(choice) == expected


def test_the_choice_is_measured_once_per_machine_and_model(lm, tmp_path, capsys):
    measure, calls = _stub(2.0, 1.0)
    first = choose_precision("auto", lm, 1, ENC, measure=measure, folder=tmp_path)
    again = choose_precision("auto", lm, 1, ENC, measure=measure, folder=tmp_path)
    assert first == again and calls == [16] and "(remembered)" in capsys.readouterr().out
    # another split layer or other inputs (06's item texts after 03's prompts): the same answer
    assert choose_precision("auto", lm, 2, ENC[:20], measure=measure, folder=tmp_path, verbose=False) == first
    assert calls == [16]


def test_an_explicit_precision_is_taken_as_asked_and_a_bad_one_named(lm, tmp_path):
    measure, calls = _stub(1.0, 10.0)
    assert choose_precision("bf16", lm, 1, ENC, measure=measure, folder=tmp_path).precision == "bf16"
    assert choose_precision("fp32", lm, 1, ENC, measure=measure, folder=tmp_path).precision == "fp32"
    assert calls == []
    with pytest.raises(ValueError, match=r"PRECISION: 'fp16' is not one of 'auto', 'fp32', 'bf16'"):
        check_precision("fp16")


def test_the_real_measurement_runs_both_precisions_and_compares_their_states(lm, tmp_path):
    choice = choose_precision("auto", lm, 1, ENC, folder=tmp_path, verbose=False)
    assert choice.precision in ("fp32", "bf16") and choice.speedup > 0
    assert 0.9 < choice.min_cosine <= 1.0 + 1e-6 and 0 <= choice.max_shift <= 1
    assert (choice.precision == "bf16") == (choice.speedup >= MARGIN and choice.min_cosine >= MIN_COSINE
                                            and choice.max_shift <= MAX_SHIFT)


def test_the_chosen_precision_runs_predictions_in_it(lm, tmp_path):
    x = torch.randn(4, 8)
    for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        with choose_precision(precision, lm, 1, ENC, folder=tmp_path).context():
            assert (x @ x.T).dtype == dtype


def test_a_bf16_cache_is_never_served_to_an_fp32_run(lm, tmp_path, capsys):
    enc = [[1, 2, 3], [4, 5, 6, 7]]
    low = cached_hidden(lm, 1, enc, name="p", autocast=True, folder=tmp_path)
    exact = cached_hidden(lm, 1, enc, name="p", autocast=False, folder=tmp_path)
    said = capsys.readouterr().out
    assert said.count("cached 2 examples") == 2 and "loaded" not in said  # two builds, none reused
    assert len(list(tmp_path.iterdir())) == 2
    assert not all(a.equal(b) for a, b in zip(low, exact))
    again = cached_hidden(lm, 1, enc, name="p", autocast=False, folder=tmp_path)
    assert all(a.equal(b) for a, b in zip(again, exact))


@pytest.mark.parametrize("content", ['{"measured": {}}', '{"measured": {"fp32_s": "fast", "bf16_s": 1, "min_cosine": 1}}',
                                     '{"measured": [1, 2]}', "not json", "",
                                     '{"measured": {"fp32_s": 2, "bf16_s": 1, "min_cosine": 1, "max_shift": "x"}}'])
def test_a_damaged_remembered_choice_is_measured_again(lm, tmp_path, content):
    measure, calls = _stub(2.0, 1.0)
    choose_precision("auto", lm, 1, ENC, measure=measure, folder=tmp_path, verbose=False)
    (remembered,) = tmp_path.glob("*.json")
    remembered.write_text(content)
    choice = choose_precision("auto", lm, 1, ENC, measure=measure, folder=tmp_path, verbose=False)
    assert choice.precision == "bf16" and calls == [16, 16]
    assert json.loads(remembered.read_text())["measured"]["fp32_s"] == 2.0  # written again, whole
