"""The demonstrations' computations, on constructed inputs with known answers, and the
tokenizer- and grammar-based parts against the tiny model and the embedded one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from playground.analysis import first_divergence
from playground.demos.hallucination import FLAG_THRESHOLD, sentence_support, split_sentences
from playground.demos.inconsistency import divergence_tree
from playground.demos.robustness import Variant, prompt_variants, user_variant, variant_agreement
from playground.demos.structured import (
    RepairResult,
    json_schema_grammar,
    repair_json,
    validate_json,
    validity_counts,
)
from playground.demos.tokens import count_words, load_parallel, run_tokens, token_counts
from playground.records import Sample, TokenRecord
from playground.sampling import GrammarConstraint, SamplingParams

# ---------------------------------------------------------------- divergence tree


def _sample(index: int, ids: list[int], prob: float = 0.5) -> Sample:
    tokens = [
        TokenRecord(index, pos, t, f"<{t}>".encode(), f"<{t}>", math.log(prob), math.log(prob),
                    1, 0.0, ())
        for pos, t in enumerate(ids)
    ]
    return Sample(index, seed=index, tokens=tokens, text="".join(r.text for r in tokens))


def _shape(node) -> tuple:
    return (node.start, node.token_ids, node.samples, node.ended,
            tuple(_shape(c) for c in node.children))


def test_tree_shares_prefixes_and_compresses_chains() -> None:
    samples = [
        _sample(0, [1, 2, 3, 4], prob=0.5),
        _sample(1, [1, 2, 3, 5, 6], prob=0.25),
        _sample(2, [1, 2, 7], prob=0.125),
        _sample(3, [1, 2]),
    ]
    tree = divergence_tree(samples)
    assert _shape(tree) == (
        0, (1, 2), (0, 1, 2, 3), (3,), (
            (2, (3,), (0, 1), (), (
                (3, (4,), (0,), (0,), ()),
                (3, (5, 6), (1,), (1,), ()),
            )),
            (2, (7,), (2,), (2,), ()),
        ),
    )
    assert tree.text == "<1><2>"
    assert tree.end == 2
    shared, alone = tree.children
    assert shared.prob == pytest.approx(0.5)  # from sample 0, the first to take token 3
    assert alone.prob == pytest.approx(0.125)
    assert shared.children[1].text == "<5><6>"
    assert shared.children[1].chain_prob == pytest.approx(0.25**2)


def test_the_trees_first_fork_is_first_divergence() -> None:
    """The root ends where `first_divergence` finds the fork, and its children (plus the
    samples that end there) are that fork's branches, token, text and probability alike."""
    cases = [
        [_sample(0, [1, 2, 3, 4]), _sample(1, [1, 2, 3, 5]), _sample(2, [1, 2, 7]),
         _sample(3, [1, 2])],
        [_sample(0, [1, 2]), _sample(1, [1, 2])],  # identical
        [_sample(0, [1, 2]), _sample(1, [3, 2])],  # part at the first token
        [_sample(0, [1, 2]), _sample(1, [1, 2, 3])],  # one ends first
        [_sample(0, [4])],
    ]
    for samples in cases:
        tree, fork = divergence_tree(samples), first_divergence(samples)
        parts = len(tree.children) + bool(tree.ended)
        if fork is None:
            assert parts < 2
            continue
        assert tree.end == fork.position
        assert [c.samples for c in tree.children] == [
            b.samples for b in fork.branches if b.token_id is not None]
        by_samples = {b.samples: b for b in fork.branches}
        assert len(by_samples) == parts
        for child in tree.children:
            branch = by_samples[child.samples]
            assert (child.token_ids[0], child.first_piece) == (branch.token_id, branch.text)
            assert child.prob == pytest.approx(branch.prob)
        if tree.ended:
            assert by_samples[tree.ended].token_id is None


def test_tree_of_samples_parting_at_once_has_an_empty_root() -> None:
    tree = divergence_tree([_sample(0, [1, 2]), _sample(1, [3])])
    assert tree.token_ids == () and tree.prob == 1.0 and tree.text == ""
    assert [c.token_ids for c in tree.children] == [(1, 2), (3,)]
    assert divergence_tree([]).samples == ()


# ---------------------------------------------------------------- consistency


def test_split_sentences_keeps_decimals_and_abbreviations() -> None:
    text = "Pi is 3.14. Fruit, e.g. apples, is sweet! Is it?\n- a list item\napprox. three. Done"
    assert split_sentences(text) == [
        "Pi is 3.14.",
        "Fruit, e.g. apples, is sweet!",
        "Is it?",
        "- a list item",
        "approx. three.",
        "Done",
    ]
    assert split_sentences('He said "Stop." Then left.') == ['He said "Stop."', "Then left."]
    assert split_sentences("今天天气很好。你好吗？") == ["今天天气很好。", "你好吗？"]
    assert split_sentences("  \n\n") == []


def test_sentence_support_scores_the_details_the_others_lack() -> None:
    support = sentence_support([
        "Paris is the capital of France. It has 2 million people.",
        "The capital of France is Paris.",
        "France's capital is Paris. About 2 million live there.",
    ])
    assert [[(s.text, round(s.support, 4)) for s in sample] for sample in support] == [
        [("Paris is the capital of France.", 1.0), ("It has 2 million people.", 0.3333)],
        [("The capital of France is Paris.", 1.0)],
        [("France's capital is Paris.", 1.0), ("About 2 million live there.", 0.3333)],
    ]
    made_up = support[0][1]
    assert made_up.flagged and made_up.support < FLAG_THRESHOLD
    assert made_up.unsupported == ("people",)
    assert (made_up.sample, made_up.index) == (0, 1)
    assert not support[0][0].flagged


def test_sentence_support_edge_cases() -> None:
    alone = sentence_support(["Only one sample."])
    assert math.isnan(alone[0][0].support)
    # Nothing but stopwords: compared on all its words. No words at all: nothing to contradict.
    yes = sentence_support(["Yes, it is.", "It is, yes.", "..."])
    assert yes[0][0].support == pytest.approx(0.5)
    assert yes[2][0].support == 1.0


# ---------------------------------------------------------------- robustness variants


def test_prompt_variants_without_options() -> None:
    variants = prompt_variants("What is the capital of France?", seed=3)
    assert [v.kind for v in variants] == [
        "original", "typos", "lowercase", "uppercase", "extra-spaces",
        "template:question-answer", "template:answer-briefly", "template:wondering",
    ]
    texts = {v.kind: v.text for v in variants}
    assert texts["original"] == "What is the capital of France?"
    assert texts["lowercase"] == "what is the capital of france?"
    assert texts["uppercase"] == "WHAT IS THE CAPITAL OF FRANCE?"
    assert texts["extra-spaces"] == "  What   is   the   capital   of   France?  "
    assert texts["template:question-answer"] == "Question: What is the capital of France?\nAnswer:"
    assert texts["template:answer-briefly"] == (
        "What is the capital of France? Please answer briefly."
    )
    assert texts["template:wondering"] == "I was wondering: What is the capital of France?"
    assert all(v.option_order is None for v in variants)
    # Typos: deterministic per seed, one per 25 characters, never a word's first letter.
    assert texts["typos"] != texts["original"]
    assert texts["typos"] == prompt_variants("What is the capital of France?", seed=3)[1].text
    assert [w[0] for w in texts["typos"].split()] == [w[0] for w in texts["original"].split()]


def test_prompt_variants_with_options_reorder_and_map_back() -> None:
    variants = prompt_variants("Capital of France?", seed=0, options=["Paris", "Rome", "Oslo"])
    by_kind = {v.kind: v for v in variants}
    assert by_kind["original"].text == "Capital of France?\nA) Paris\nB) Rome\nC) Oslo"
    assert by_kind["lowercase"].text == "capital of france?\nA) Paris\nB) Rome\nC) Oslo"
    assert by_kind["template:answer-briefly"].text == (
        "Capital of France?\nA) Paris\nB) Rome\nC) Oslo\nPlease answer briefly."
    )
    reordered = by_kind["reordered"]
    assert reordered.text == "Capital of France?\nA) Oslo\nB) Rome\nC) Paris"
    assert reordered.option_order == (2, 1, 0)
    assert [reordered.original_letter(x) for x in "ABC"] == ["C", "B", "A"]
    assert by_kind["original"].original_letter("B") == "B"
    with pytest.raises(ValueError):
        prompt_variants("Q?", seed=0, options=list("abcdef"))


def test_variant_agreement_maps_reordered_answers_back() -> None:
    variants = prompt_variants("Capital of France?", seed=0, options=["Paris", "Rome", "Oslo"])
    outputs = ["A) Paris"] * 7 + ["B"] + ["The answer is C."]  # last: reordered, C is Paris
    agreement = variant_agreement(variants, outputs)
    assert agreement.kind == "choice"
    assert agreement.answer == "A"
    assert agreement.share == pytest.approx(8 / 9)
    assert agreement.answers[-1] == "A"
    assert agreement.groups == (("A", (0, 1, 2, 3, 4, 5, 6, 8)), ("B", (7,)))
    assert agreement.agrees == (True,) * 7 + (False, True)


def test_variant_agreement_reads_an_option_named_without_its_letter() -> None:
    variants = prompt_variants("Capital of France?", seed=0, options=["Paris", "Rome", "Oslo"])
    outputs = (["It is Paris."] + ["paris, of course"] + ["Paris or Rome?"] + ["Parisian"]
               + ["A"] * 4 + ["The capital is Paris."])  # last: reordered, Paris shown as C
    agreement = variant_agreement(variants, outputs)
    assert agreement.answers == ("A", "A", None, None, "A", "A", "A", "A", "A")


def test_variant_agreement_free_answers_and_user_variant() -> None:
    variants = [*prompt_variants("How many legs has a spider?", seed=1)[:2],
                user_variant("spider legs?")]
    assert variants[-1] == Variant("user", "spider legs?", None)
    agreement = variant_agreement(variants, ["It has 8 legs.", "Eight... no, 8.", "6"])
    assert (agreement.kind, agreement.answer, agreement.answers) == ("number", "8",
                                                                     ("8", "8", "6"))
    with pytest.raises(ValueError):
        variant_agreement(variants, ["8"])


# ---------------------------------------------------------------- structured output

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "role": {"enum": ["admin", "user"]},
        "score": {"type": ["number", "null"]},
    },
    "required": ["name", "age"],
}


@pytest.mark.parametrize(
    ("text", "ok", "reason"),
    [
        ('{"name": "Ann", "age": 3}', True, ""),
        ('{"name": "Ann", "age": 3.0, "score": null, "tags": []}', True, ""),
        ('{"name": "Ann", "age": 3, "role": "admin", "score": 2.5}', True, ""),
        ('{"name": "Ann"}', False, "$: missing required property 'age'"),
        ('{"name": "Ann", "age": "3"}', False, "$.age: expected integer, got string"),
        ('{"name": "Ann", "age": true}', False, "$.age: expected integer, got boolean"),
        ('{"name": "Ann", "age": 3.5}', False, "$.age: expected integer, got number"),
        ('{"name": "A", "age": 1, "tags": ["x", 2]}', False,
         "$.tags[1]: expected string, got integer"),
        ('{"name": "A", "age": 1, "role": "root"}', False,
         '$.role: "root" is not one of ["admin", "user"]'),
        ('[{"name": "A"}]', False, "$: expected object, got array"),
        ('{"name": "A", "age": 1,}', False,
         "not JSON: Expecting property name enclosed in double quotes"),
    ],
)  # fmt: skip
def test_validate_json(text: str, ok: bool, reason: str) -> None:
    assert validate_json(text, PERSON) == (ok, reason)


def test_validate_json_additional_properties_and_enum_types() -> None:
    closed = {"type": "object", "properties": {"a": {}}, "additionalProperties": False}
    assert validate_json('{"a": 1}', closed) == (True, "")
    assert validate_json('{"a": 1, "b": 2}', closed) == (False, "$: unexpected property 'b'")
    assert validate_json("1.0", {"enum": [1]}) == (True, "")
    assert validate_json("true", {"enum": [1]})[0] is False


@pytest.mark.parametrize(
    ("broken", "fixed", "changes"),
    [
        ('{"a": 1}', '{"a": 1}', ()),
        ('```json\n{"a": 1}\n```', '{"a": 1}', ("removed the code fence",)),
        ('```\n[1, 2]', "[1, 2]", ("removed the code fence",)),
        ('{"a": 1, "b": [1, 2,],}', '{"a": 1, "b": [1, 2]}', ("removed 2 trailing commas",)),
        ('Sure! Here it is: {"a": {"b": 1}} Hope this helps.', '{"a": {"b": 1}}',
         ("extracted the JSON from the surrounding text",)),
        ('{"a": [1, 2', '{"a": [1, 2]}', ("closed 2 brackets",)),
        ('{"a": "hel', '{"a": "hel"}', ("closed a string, 1 bracket",)),
        ('{"a": "x\\', '{"a": "x"}', ("closed a string, 1 bracket",)),
        ('{"a": 1, "b":', '{"a": 1, "b": null}', ("closed a missing value (null), 1 bracket",)),
        ("[1, 2,", "[1, 2]", ("closed 1 bracket", "removed 1 trailing comma")),
        ('{"a": "}, ]"', '{"a": "}, ]"}', ("closed 1 bracket",)),
        ('Answer:\n```json\n{"a": [1,\n```\nDone', '{"a": [1]}',
         ("removed the code fence", "closed 2 brackets", "removed 1 trailing comma")),
        ("no JSON here", "no JSON here", ()),
    ],
)  # fmt: skip
def test_repair_json(broken: str, fixed: str, changes: tuple[str, ...]) -> None:
    assert repair_json(broken) == RepairResult(fixed, changes)


def test_validity_counts_finds_the_repeated_failure() -> None:
    texts = [
        '{"name": "Ann", "age": 3}',
        '```json\n{"name": "Bo", "age": 4}\n```',
        '{"name": "Cy"}',
        '{"name": "Di"}',
        '{"name": "Ed"}',
        "I cannot answer that.",
    ]
    counts = validity_counts(texts, PERSON)
    assert (counts.valid_raw, counts.valid_repaired, counts.invalid) == (1, 1, 4)
    assert counts.common_failure == "$: missing required property 'age'"
    assert counts.common_failure_count == 3
    assert counts.reasons[0] == "" and counts.reasons[1] == "not JSON: inside a code fence"
    assert counts.reasons[5] == "not JSON: Expecting value"  # nothing to repair: as parsed
    faults = validity_counts(['{"name": "A", "age": 1,}', 'Sure: {"name": "B", "age": 2}',
                              '{"name": "C", "age": 3'], PERSON).reasons
    assert faults == ("not JSON: a trailing comma", "not JSON: JSON inside other text",
                      "not JSON: cut off before the end")
    assert validity_counts([], PERSON).common_failure is None


def test_json_schema_grammar_is_gbnf_with_a_root() -> None:
    grammar = json_schema_grammar({"type": "object", "properties": {"a": {"type": "integer"}},
                                   "required": ["a"]})
    assert "root ::=" in grammar
    assert '"\\"a\\""' in grammar


def _prefixes_of(words: list[bytes]) -> set[bytes]:
    return {w[:i] for w in words for i in range(1, len(w) + 1)}


def test_grammar_constraint_allows_only_the_grammar(tiny_engine) -> None:
    grammar = GrammarConstraint(tiny_engine.model, 'root ::= "yes" | "no"')
    mask = grammar.allowed_mask()
    assert mask.shape == (tiny_engine.n_vocab,)
    allowed = {tiny_engine.token_bytes(int(t)) for t in np.flatnonzero(mask)}
    assert {b"y", b"n"} <= allowed <= _prefixes_of([b"yes", b"no"])
    logits = np.zeros(tiny_engine.n_vocab, dtype=np.float32)
    constrained = grammar.apply(logits)
    assert constrained.dtype == np.float32
    assert np.array_equal(np.isfinite(constrained), mask)

    forbidden = next(t for t in range(tiny_engine.n_vocab) if not mask[t])
    with pytest.raises(ValueError):
        grammar.accept(forbidden)
    # Spell "yes" a letter at a time: after "ye" only "s" may follow.
    for letter in (b"y", b"e"):
        allowed_now = np.flatnonzero(grammar.allowed_mask())
        grammar.accept(next(int(t) for t in allowed_now
                            if tiny_engine.token_bytes(int(t)) == letter))
    rest = {tiny_engine.token_bytes(int(t)) for t in np.flatnonzero(grammar.allowed_mask())}
    assert rest == {b"s"}
    grammar.accept(next(int(t) for t in np.flatnonzero(grammar.allowed_mask())))
    done = np.flatnonzero(grammar.allowed_mask())
    assert len(done) > 0 and all(tiny_engine.is_end_of_generation(int(t)) for t in done)
    grammar.close()


def test_grammar_shortcut_draws_exactly_as_the_whole_mask(embedded_engine) -> None:
    """`apply(logits, enough)` checks only the likeliest candidates: the samples (tokens and
    sampling logprobs) must be those of the whole-vocabulary mask, with the same seeds."""

    whole_masks = []

    class Counted(GrammarConstraint):
        def allowed_mask(self) -> np.ndarray:
            whole_masks.append(1)
            return super().allowed_mask()

    class WholeMask(GrammarConstraint):
        def apply(self, logits: np.ndarray, enough: int = 0) -> np.ndarray:
            return super().apply(logits, 0)

    gbnf = json_schema_grammar({"type": "object", "properties": {"name": {"type": "string"},
                                "age": {"type": "integer"}}, "required": ["name", "age"]})
    prompt = "Give a person as JSON with a name and an age."
    for params in (SamplingParams(temperature=0.8, top_k=40, seed=3, max_tokens=40),
                   SamplingParams(temperature=0.0, top_k=1, seed=3, max_tokens=40)):
        samples = []
        whole_masks.clear()
        for kind in (Counted, WholeMask):
            run = embedded_engine.start_run(prompt, params, 3)
            for event in embedded_engine.generate(run, constraint=lambda k=kind: k(
                    embedded_engine.model, gbnf)):
                run.add(event)
            samples.append([[(t.id, t.sampling_logprob) for t in s.tokens] for s in run.samples])
        assert samples[0] == samples[1]
        assert all(len(s) > 5 for s in samples[0])
        # The shortcut was taken (where few tokens are allowed, e.g. after "{", every
        # allowed one must be found, so the whole vocabulary is checked).
        drawn = sum(len(s) for s in samples[0])
        assert len(whole_masks) < (drawn if params.top_k > 1 else drawn / 4)


def test_grammar_constraint_rejects_a_broken_grammar(tiny_engine) -> None:
    with pytest.raises(ValueError):
        GrammarConstraint(tiny_engine.model, "root ::= (")
    schema = GrammarConstraint(tiny_engine.model, json_schema_grammar({"type": "boolean"}))
    allowed = {tiny_engine.token_bytes(int(t)) for t in np.flatnonzero(schema.allowed_mask())}
    assert allowed and allowed <= _prefixes_of([b"true", b"false"])


# ---------------------------------------------------------------- tokens across languages


def test_parallel_sentences_are_aligned() -> None:
    parallel = load_parallel()
    assert list(parallel) == ["English", "Hindi", "Chinese", "Arabic", "Spanish", "Swahili"]
    assert {len(s) for s in parallel.values()} == {5}
    assert all(s.strip() for sentences in parallel.values() for s in sentences)


def test_count_words() -> None:
    assert count_words("The weather is nice today.") == 5
    assert count_words("今天天气很好。") == 6
    assert count_words("¿Dónde está la estación de tren?") == 6
    assert count_words("आज मौसम अच्छा है।") == 4
    assert count_words("Hello 世界 !") == 3
    assert count_words("") == 0


@pytest.mark.parametrize("engine_fixture", ["tiny_engine", "embedded_engine"])
def test_token_counts_match_the_tokenizer(engine_fixture: str, request) -> None:
    engine = request.getfixturevalue(engine_fixture)
    parallel = load_parallel()
    for i in range(5):
        texts = {language: sentences[i] for language, sentences in parallel.items()}
        for count in token_counts(engine, texts):
            ids = engine.tokenize(count.text, add_special=False)
            assert count.tokens == len(ids) == len(count.pieces)
            joined = b"".join(piece for _, piece in count.pieces)
            # SentencePiece models (the tiny one) prefix a space; byte-level BPE does not.
            assert joined in (count.text.encode(), b" " + count.text.encode())
            assert count.chars == len(count.text)
            assert count.tokens_per_word == count.tokens / count.words
            assert count.tokens_per_char == count.tokens / count.chars
    english = parallel["English"]
    assert run_tokens(engine, 0).medians["English"] == float(
        sorted(len(engine.tokenize(s, add_special=False)) for s in english)[2]
    )


def test_embedded_tokenizer_joins_pieces_exactly(embedded_engine) -> None:
    for sentences in load_parallel().values():
        for count in token_counts(embedded_engine, dict.fromkeys(["x"], sentences[0])):
            assert b"".join(piece for _, piece in count.pieces) == count.text.encode()
