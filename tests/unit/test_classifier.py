"""The learned classifier and its part in the rules stage's decision (engine.classifier).

The shipped model is trained once per test session from rules/examples (or loaded from the
model cache); the small models below are trained from a handful of examples in
milliseconds, for what does not need the real one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from engine.calendar import SHANGHAI
from engine.classifier import train as training
from engine.classifier.features import batch_keys, gram_key, ngrams, normalise
from engine.classifier.model import NONE, MatterModel
from engine.classifier.settings import ClassifierSettings
from engine.classify import classify_data
from engine.contracts import Classified, Triage
from engine.reference.examples import Example, ExampleCorpus, load_examples
from engine.rules import RuleSet
from engine.rules.load import load_rules
from engine.yamlfile import FileProblems
from tests.unit.rules_copy import rules_copy_with

REPO = Path(__file__).resolve().parents[2]
AT = datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI)
_RULESET: list[RuleSet] = []


def ruleset() -> RuleSet:
    if not _RULESET:
        _RULESET.append(load_rules(REPO / "rules"))
    return _RULESET[0]


def report(text: str, **extra: object) -> dict[str, object]:
    return {"channel": "open311", "channel_id": f"t-{abs(hash(text))}",
            "reported_at": AT.isoformat(), "description": text,
            "address": "余杭区五常街道", **extra}


def classify(text: str, rules: RuleSet | None = None, trace: list[str] | None = None,
             **extra: object) -> Classified | Triage:
    outcome = classify_data(rules or ruleset(), report(text, **extra), AT, trace=trace)
    assert isinstance(outcome, Classified | Triage), outcome
    return outcome


def with_calibration(rules: RuleSet, **changes: float) -> RuleSet:
    """The same rule set, its model's thresholds changed (a shallow copy: nothing shared
    is modified)."""
    assert rules.model is not None
    copy = RuleSet(rules.root, rules.revision, rules.matters, rules.jurisdiction,
                   rules.departments, rules.channels, rules.layers, rules.holidays,
                   rules.examples, rules.classifier,
                   replace(rules.model, calibration=replace(rules.model.calibration,
                                                            **changes)))
    return copy


# --- features and the run-time model ------------------------------------------------------


def test_normalise_folds_width_case_numbers_and_space() -> None:
    assert normalise("３号楼 ＡＢ  12345路") == "0号楼ab0路"
    assert normalise("") == ""


def test_integer_keys_are_the_ngrams_in_the_same_order() -> None:
    text = normalise("燃气泄露了快来人a1")
    keys, texts = batch_keys([text, "x", "", "ab"])
    # Text by text, the same n-grams as ``ngrams`` (none across a join), in order per kind.
    for i, one in enumerate([text, "x", "", "ab"]):
        assert sorted(keys[texts == i].tolist()) == sorted(gram_key(g) for g in ngrams(one))


TINY = {
    "010101": ["楼上天天半夜拖椅子吵得睡不着", "隔壁晚上唱歌声音太大", "邻居家深夜蹦迪咚咚响"],
    "120101": ["路上有个大坑", "马路塌了一块车子颠得厉害", "人行道砖头翘起来绊人"],
    "030201": ["楼道里有股煤气味快来人", "厨房燃气管漏气了", "闻到好浓的天然气味道"],
    NONE: ["谢谢你们上次帮忙", "今天天气不错", "请问这个软件怎么用"],
}


def tiny_corpus() -> ExampleCorpus:
    examples = tuple(Example(text, code or None, code == "030201", "colloquial", "tiny", i)
                     for code, texts in TINY.items() for i, text in enumerate(texts))
    return ExampleCorpus(examples, (), "tiny")


def tiny_fit() -> tuple[object, object, object, MatterModel]:
    data = training.training_set(tiny_corpus(), ruleset().matters)
    vectoriser, matter, urgent = training._fit(data.texts, data.labels,
                                               data.urgent[:data.examples], data.examples,
                                               ClassifierSettings())
    calibration = replace(ruleset().model.calibration)  # type: ignore[union-attr]
    model = training.assemble("tiny", vectoriser, matter, urgent, calibration,
                              training.platforms_of(ruleset().matters))
    return vectoriser, matter, urgent, model


@pytest.mark.parametrize("text", ["楼上半夜吵", "路面有大坑，天然气味道", "ＡＢＣ１２３",
                                  "完全无关的字", "", "坑" * 3000])
def test_run_time_vectors_and_scores_equal_scikit_learns(text: str) -> None:
    vectoriser, matter, _urgent, model = tiny_fit()
    expected = vectoriser.transform([text]).toarray()[0]  # type: ignore[attr-defined]
    rows, values = model.vector(text)
    got = np.zeros_like(expected)
    got[rows] = values
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    scores = matter.decision_function(vectoriser.transform([text]))[0]  # type: ignore[attr-defined]
    ours = values @ model.weights[rows] + model.bias if len(rows) else model.bias
    np.testing.assert_allclose(ours, scores, rtol=1e-4, atol=1e-5)


def test_a_saved_model_loads_equal(tmp_path: Path) -> None:
    model = tiny_fit()[3]
    model.save(tmp_path / "m.npz")
    again = MatterModel.load(tmp_path / "m.npz")
    assert again.classes == model.classes and again.features == model.features
    assert again.calibration == model.calibration
    text = "楼道里煤气味很重"
    assert again.score(text).suggestions == model.score(text).suggestions
    assert again.urgency(text) == pytest.approx(model.urgency(text))


def test_training_is_deterministic() -> None:
    first, second = tiny_fit()[3], tiny_fit()[3]
    assert first.features == second.features
    assert np.array_equal(first.weights, second.weights)
    assert np.array_equal(first.urgent_weights, second.urgent_weights)


def test_the_shipped_model_is_named_by_its_inputs() -> None:
    rules = ruleset()
    assert rules.model is not None
    assert rules.model.identity == training.identity(rules.examples, rules.matters,
                                                     rules.classifier, rules.urgent_words())
    other = ClassifierSettings(dispatch_precision=0.9)
    assert training.identity(rules.examples, rules.matters, other,
                             rules.urgent_words()) != rules.model.identity


# --- the decision --------------------------------------------------------------------------


def test_the_model_dispatches_what_no_rule_decides() -> None:
    for text, matter in (("路上有个大坑", "120101"), ("隔壁邻居家天天晚上噪音很大", "010101"),
                         ("燃气泄露了快来人", "030201")):
        outcome = classify(text)
        assert isinstance(outcome, Classified), (text, outcome)
        assert (outcome.matter_code, outcome.classified_by) == (matter, "model")
        assert outcome.confidence is not None
        assert outcome.confidence >= ruleset().model.calibration.dispatch_threshold  # type: ignore[union-attr]
        assert any(m.rule.startswith("model:") for m in outcome.matched_rules)


def test_the_gas_leak_in_colloquial_spelling_is_urgent() -> None:
    outcome = classify("燃气泄露了快来人")
    assert isinstance(outcome, Classified)
    assert outcome.priority == "urgent"


def test_operators_keyword_rules_decide_before_the_model() -> None:
    outcome = classify("楼道里一股煤气味")
    assert isinstance(outcome, Classified)
    assert outcome.classified_by == "keywords"
    assert any(m.rule == "gas-smell" for m in outcome.matched_rules)


def test_explicit_codes_and_channel_categories_keep_their_priority() -> None:
    outcome = classify("路上有个大坑", matter_code="010101")
    assert isinstance(outcome, Classified)
    assert (outcome.matter_code, outcome.classified_by) == ("010101", "matter_code")


def test_a_catalogue_keyword_is_evidence_not_a_verdict() -> None:
    # 着火 used about a blocked fire lane: neither the fire rule nor the keyword decides.
    outcome = classify("小区消防通道被私家车堵死了，万一着火了消防车都进不来，希望处理")
    assert not (isinstance(outcome, Classified) and outcome.matter_code == "030105")


def test_below_the_threshold_a_report_goes_to_triage_with_three_suggestions() -> None:
    strict = with_calibration(ruleset(), dispatch_threshold=1.01)
    outcome = classify("路上有个大坑", strict)
    assert isinstance(outcome, Triage)
    assert outcome.reason == "uncertain"
    assert len(outcome.suggestions) == 3
    first = outcome.suggestions[0]
    assert (first.matter_code, first.matter_name, first.platform) == ("120101", "道路破损",
                                                                       "enforcement")
    confidences = [s.confidence for s in outcome.suggestions]
    assert confidences == sorted(confidences, reverse=True)
    assert 0 < confidences[0] <= 1


def test_a_report_that_fits_no_item_goes_to_triage() -> None:
    outcome = classify("谢谢你们上周帮我们小区修好了路灯，工作人员态度特别好，点赞")
    assert isinstance(outcome, Triage)
    assert outcome.reason in ("unclassified", "uncertain")


def test_an_urgent_report_that_cannot_be_classified_goes_to_triage_marked_urgent() -> None:
    strict = with_calibration(ruleset(), dispatch_threshold=1.01)
    outcome = classify("快来人啊燃气泄露了，好大的味道", strict)
    assert isinstance(outcome, Triage)
    assert outcome.urgent
    calm = classify("想问下社区什么时候开始办老年证", strict)
    assert isinstance(calm, Triage)
    assert not calm.urgent


def test_urgency_is_judged_from_the_text_whatever_the_matter() -> None:
    # An explicit, harmless matter code does not hide danger to life in the text.
    outcome = classify("楼上吵架，现在男的拿刀砍人了，有人在流血", matter_code="010101")
    assert isinstance(outcome, Classified)
    assert outcome.priority == "urgent"


def test_a_disabled_catalogue_item_is_explained_and_left_to_a_person() -> None:
    trace: list[str] = []
    outcome = classify("小区广场舞音响太吵了，每天晚上跳到十点", trace=trace)
    assert isinstance(outcome, Triage)  # Yuhang disables catalogue:110103
    assert outcome.reason == "uncertain"
    assert outcome.suggestions and outcome.suggestions[0].matter_code == "110103"
    text = "\n".join(trace)
    assert "'catalogue:110103' matched '广场舞'" in text
    assert "switches it off (disable:)" in text
    assert "a person decides it" in text


def test_explain_shows_the_words_the_confidence_and_the_runners_up() -> None:
    trace: list[str] = []
    classify("路上有个大坑", trace=trace)
    text = "\n".join(trace)
    assert "model: platform enforcement" in text
    assert "words that carried it:" in text and "'坑'" in text
    assert "runner-up:" in text
    assert "danger to life" in text


# --- the corpus ----------------------------------------------------------------------------


def corpus_with(tmp_path: Path, body: str) -> Path:
    return rules_copy_with(tmp_path, {"examples/zz-test.yaml": body})


def test_an_unknown_item_code_is_a_problem_with_file_and_line(tmp_path: Path) -> None:
    rules = corpus_with(tmp_path, 'items:\n  "999999":\n    hotline: ["这是一个测试用的例子"]\n')
    with pytest.raises(FileProblems) as caught:
        load_examples(rules / "examples", ruleset().matters.by_code)
    assert "zz-test.yaml:2: item 999999 is not in the catalogue" in str(caught.value)


def test_a_duplicate_text_names_both_places(tmp_path: Path) -> None:
    first = next(iter(ruleset().examples.examples))
    text = first.text.replace('"', "“")
    rules = corpus_with(tmp_path, f'items:\n  "{first.matter or "010101"}":\n'
                                  f'    hotline:\n      - "{text}"\n')
    with pytest.raises(FileProblems) as caught:
        load_examples(rules / "examples", ruleset().matters.by_code)
    assert "zz-test.yaml:4: this text is already an example at" in str(caught.value)


def test_bad_yaml_and_bad_shapes_are_problems(tmp_path: Path) -> None:
    rules = corpus_with(tmp_path, "items:\n  \"010101\": [unclosed\n")
    with pytest.raises(FileProblems, match=r"zz-test\.yaml:.*YAML syntax error"):
        load_examples(rules / "examples", ruleset().matters.by_code)
    rules = corpus_with(tmp_path / "b", 'items:\n  "010101":\n    podcast: ["一个例子啊"]\n')
    with pytest.raises(FileProblems, match=r"zz-test\.yaml:3"):
        load_examples(rules / "examples", ruleset().matters.by_code)


def test_items_with_too_few_examples_are_warned_with_the_count(tmp_path: Path) -> None:
    folder = tmp_path / "examples"
    folder.mkdir()
    (folder / "a.yaml").write_text('items:\n  "010101":\n    patrol: ["巡查发现楼上很吵"]\n'
                                   "none:\n  other: [\"谢谢你们\"]\n", encoding="utf-8")
    corpus = load_examples(folder, ruleset().matters.by_code, ["010101", "010102"])
    assert [e.matter for e in corpus.examples] == ["010101", None]
    warnings = [str(w) for w in corpus.warnings]
    assert any("item 010101 has 1 example(s)" in w for w in warnings)
    assert any("item 010102 has 0 example(s)" in w for w in warnings)


def test_every_shipped_item_has_at_least_fifteen_examples_mostly_without_its_keywords() -> None:
    rules = ruleset()
    counts = rules.examples.counts()
    assert min(counts[code] for code in rules.matters.by_code) >= 15
    assert counts[None] >= 200
    with_keyword = sum(any(k in e.text for k in rules.matters.by_code[e.matter].keywords)
                       for e in rules.examples.examples if e.matter)
    assert with_keyword / sum(1 for e in rules.examples.examples if e.matter) < 0.25
    assert rules.warnings == []


def test_the_examples_are_part_of_the_revision_and_the_eval_set_is_not(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    from engine.rules.load import revision_of

    before = revision_of(rules)
    with (rules / "eval" / "extra.jsonl").open("w", encoding="utf-8") as out:
        out.write(json.dumps({"text": "测试", "matter_code": None}, ensure_ascii=False) + "\n")
    assert revision_of(rules) == before
    path = next((rules / "examples").glob("*.yaml"))
    path.write_text(path.read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
    assert revision_of(rules) != before


# --- rules eval -----------------------------------------------------------------------------


def test_rules_eval_prints_the_figures_and_refuses_bad_usage(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    lines = [{"text": "路上有个大坑，车子颠得厉害", "matter_code": "120101", "urgent": False,
              "style": "colloquial", "kind": "item"},
             {"text": "燃气泄露了快来人", "matter_code": "030201", "urgent": True,
              "style": "colloquial", "kind": "item"},
             {"text": "谢谢你们，辛苦了", "matter_code": None, "urgent": False,
              "style": "colloquial", "kind": "no_item"}]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                    encoding="utf-8")
    assert main(["rules", "eval", str(path), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["eval"]["overall"]
    assert figures["lines"] == 3
    assert figures["urgent_recall"] == 1.0
    assert main(["rules", "eval"]) == 2
    path.write_text('{"text": "x", "matter_code": "000000"}\n', encoding="utf-8")
    assert main(["rules", "eval", str(path)]) == 1
    assert f"{path}:1: matter_code 000000 is not in the catalogue" in capsys.readouterr().err


def test_cross_validation_scores_every_example_by_a_model_that_did_not_see_it() -> None:
    from engine.classifier.evaluate import cross_validate

    rules = ruleset()
    tiny = RuleSet(rules.root, rules.revision, rules.matters, rules.jurisdiction,
                   rules.departments, rules.channels, rules.layers, rules.holidays,
                   tiny_corpus(), rules.classifier, rules.model)
    result = cross_validate(tiny, 3)
    assert result["folds"] == 3 and result["examples"] == len(tiny_corpus().examples)
    assert set(result["by_style"]) == {"colloquial"}
    assert 0.0 <= result["overall"]["item_accuracy_top"] <= 1.0


def test_a_batch_is_classified_exactly_as_one_report_at_a_time() -> None:
    from engine.classify import classify_many, classify_raw
    from engine.contracts import to_json

    rules = ruleset()
    raws = [line for line in (REPO / "tests/data/history.jsonl").read_bytes().splitlines()
            if line.strip()]
    for path in sorted((REPO / "rules" / "eval").glob("*.jsonl"))[:1]:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()[:200]):
            raws.append(json.dumps({"channel": "hotline", "channel_id": f"b-{i}",
                                    "reported_at": AT.isoformat(),
                                    "description": json.loads(line)["text"],
                                    "address": "余杭区五常街道"}, ensure_ascii=False).encode())
    raws += [b"not json", b'{"channel": "sensor"}', "😀".encode()]
    inputs = [(raw, AT) for raw in raws]
    batch = classify_many(rules, inputs)
    one = [classify_raw(rules, raw, AT) for raw in raws]
    assert [to_json(r) for r in batch] == [to_json(r) for r in one]
    assert classify_many(rules, []) == []


def test_one_row_scores_equal_the_batch_form_ties_included() -> None:
    """``_scored`` (a report whose keywords are evidence) must give what ``_scored_rows``
    gives for the same row, to the last bit, or a replay could differ from the original."""
    model = ruleset().model
    assert model is not None
    rng = np.random.default_rng(7)
    size = len(model.classes)
    for i in range(500):
        raw = rng.normal(size=size).astype(np.float32) * np.float32(rng.uniform(0.5, 8))
        if i % 3 == 0:  # many equal, near-zero probabilities: ties at the cut of the top 3
            raw[rng.integers(0, size, 40)] = -90
        probabilities = np.exp(raw - raw.max()).astype(np.float32)
        probabilities /= probabilities.sum()
        urgency = float(rng.uniform())
        one = model._scored(probabilities, urgency, 3)
        rows = model._scored_rows(probabilities[None, :], np.asarray([urgency]), 3)[0]
        assert one[:5] == rows[:5]


def test_the_direct_sparse_product_equals_scipys_checked_one() -> None:
    """``sparse_product`` calls scipy's kernel past its checks; a scipy that changed it must
    fail here (or take the checked path), never score differently."""
    from engine.classifier.model import sparse_product, sparse_product_checked

    model = ruleset().model
    assert model is not None
    texts = ["小区门口的路灯坏了好几天了", "燃气泄露闻到很大的味道", "", "楼上装修噪音扰民"]
    for batch in (texts[:1], texts, texts[2:3]):
        rows, values, indptr = model.vectors(batch)
        for dense in (model.weights, model.urgent_weights[:, None]):
            fast = sparse_product(rows, values, indptr, dense)
            assert fast.dtype == np.float32 and fast.shape == (len(batch), dense.shape[1])
            assert np.array_equal(fast, sparse_product_checked(rows, values, indptr, dense))
