"""Best-of-N ranking, answer extraction and majority vote, checked against hand-computed truth."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from playground.scoring import (
    LOGPROB_SCORES,
    Answer,
    Ranking,
    extract_answer,
    kendall_tau,
    majority_vote,
    mean_logprob,
    normalized_logprob,
    rank_by_logprob,
    rank_by_scores,
    rank_by_vote,
    sum_logprob,
    top_agrees,
)

# ---------------------------------------------------------------- log-probability scores

# Three samples whose best differs under each score:
#   0: 2 tokens, sum -2.0, mean -1.0
#   1: 6 tokens, sum -3.0, mean -0.5
#   2: 1 token,  sum -2.5, mean -2.5
SAMPLES = [[-1.0, -1.0], [-0.5] * 6, [-2.5]]


def test_mean_and_sum_by_hand() -> None:
    assert mean_logprob([-1.0, -2.0, -3.0]) == pytest.approx(-2.0)
    assert sum_logprob([-1.0, -2.0, -3.0]) == pytest.approx(-6.0)


def test_gnmt_length_penalty_on_two_tokens() -> None:
    # lp = ((5 + 2) / 6) ** 0.6 = 1.0969...; score = -3 / lp
    assert normalized_logprob([-1.0, -2.0]) == pytest.approx(-3.0 / (7 / 6) ** 0.6)
    assert normalized_logprob([-1.0, -2.0]) == pytest.approx(-2.73497, abs=1e-5)


def test_gnmt_alpha_zero_is_the_sum() -> None:
    assert normalized_logprob([-1.0, -2.0, -4.0], alpha=0.0) == pytest.approx(-7.0)


@pytest.mark.parametrize("score", [mean_logprob, sum_logprob, normalized_logprob])
def test_empty_sample_scores_minus_infinity(score) -> None:
    assert score([]) == -math.inf


@pytest.mark.parametrize(
    ("method", "order", "scores"),
    [
        ("sum-logprob", (0, 2, 1), (-2.0, -2.5, -3.0)),
        ("mean-logprob", (1, 0, 2), (-0.5, -1.0, -2.5)),
        # -2 / (7/6)**0.6 = -1.8233, -3 / (11/6)**0.6 = -2.0853, -2.5 / 1**0.6 = -2.5
        ("normalized-logprob", (0, 1, 2), (-1.8233, -2.0853, -2.5)),
    ],
)
def test_rank_by_logprob_each_method(method: str, order: tuple, scores: tuple) -> None:
    ranking = rank_by_logprob(SAMPLES, method)
    assert ranking.method == method
    assert ranking.order == order
    assert ranking.scores == pytest.approx(scores, abs=1e-4)


def test_logprob_scores_registry() -> None:
    assert {
        "mean-logprob": mean_logprob,
        "sum-logprob": sum_logprob,
        "normalized-logprob": normalized_logprob,
    } == LOGPROB_SCORES


def test_unknown_method_is_a_one_line_value_error() -> None:
    with pytest.raises(ValueError, match="max-logprob") as error:
        rank_by_logprob(SAMPLES, "max-logprob")
    assert "\n" not in str(error.value)


def test_rank_by_scores_breaks_ties_by_index_and_puts_nan_last() -> None:
    ranking = rank_by_scores([1.0, math.nan, 2.0, 2.0, -math.inf, 1.0, math.nan], "reward")
    assert ranking.order == (2, 3, 0, 5, 4, 1, 6)
    assert ranking.scores[:5] == (2.0, 2.0, 1.0, 1.0, -math.inf)
    assert all(math.isnan(s) for s in ranking.scores[5:])


def test_ranking_to_json_is_plain_and_maps_nan_to_none() -> None:
    ranking = rank_by_scores([0.5, math.nan, 1.5], "reward")
    data = ranking.to_json()
    assert data == {"method": "reward", "order": [2, 0, 1], "scores": [1.5, 0.5, None]}
    assert json.loads(json.dumps(data, allow_nan=False)) == data


# ---------------------------------------------------------------- answer extraction

ANSWER_FORMATS = [
    # numbers
    ("The total is 1,234 apples.", "number", "1234"),
    ("She pays 12.50 dollars.", "number", "12.5"),
    ("The temperature drops to -7 degrees.", "number", "-7"),
    ("It costs $12.", "number", "12"),
    ("The side is 12 cm", "number", "12"),
    ("Growth was 12%.", "number", "12"),
    ("He has 12 apples", "number", "12"),
    ("3/4", "number", "0.75"),
    ("That leaves 6/8 of the pie", "number", "0.75"),
    ("One third: 1/3", "number", "1/3"),
    ("Reduced, 2/6", "number", "1/3"),
    (r"So the result is \boxed{42}.", "number", "42"),
    (r"\boxed{\frac{3}{4}}", "number", "0.75"),
    (r"We get $-\frac{1}{2}$ here", "number", "-0.5"),
    ("3 + 4 = 7 apples, 7 * 2 = 14\n#### 14", "number", "14"),
    ("The answer is 18. Check: 18 - 10 = 8.", "number", "18"),
    ("Answer: 0.50", "number", "0.5"),
    ("**Final Answer:** 1,000,000", "number", "1000000"),
    (r"The first guess was 5 but \boxed{x = 6}", "number", "6"),
    ("1. Add 5 and 3 to get 8.\n2. Double it.", "number", "8"),
    ("We computed 42 in the end.\nStep 3:", "number", "42"),
    ("To find the answer: 3 plus 4 makes 7.", "number", "7"),
    # multiple choice
    ("(B)", "choice", "B"),
    ("B) 4 apples", "choice", "B"),
    ("Answer: B", "choice", "B"),
    ("After checking, the answer is C.", "choice", "C"),
    ("I pick **D** here.", "choice", "D"),
    ("Option E is the only valid one.", "choice", "E"),
    ("The correct answer is (c).", "choice", "C"),
    (r"\boxed{\text{A}}", "choice", "A"),
    ("A. Because it is smaller.", "choice", "A"),
    ("(A) is wrong since 3 > 2, so (D) must be right.", "choice", "D"),
    # yes / no
    ("Yes", "yesno", "yes"),
    ("no.", "yesno", "no"),
    ("**No**, it cannot.", "yesno", "no"),
    ("Thinking about it, the answer is yes.", "yesno", "yes"),
    # free text
    ("Paris", "text", "paris"),
    ("The answer is The Eiffel Tower!", "text", "eiffel tower"),
    ("Let me think.\nIt is   Mount  Everest.", "text", "it is mount everest"),
    ("Answer: an Apple", "text", "apple"),
]


@pytest.mark.parametrize(("text", "kind", "value"), ANSWER_FORMATS)
def test_extract_answer_formats_with_auto(text: str, kind: str, value: str) -> None:
    answer = extract_answer(text)
    assert answer is not None
    assert (answer.kind, answer.value) == (kind, value)


@pytest.mark.parametrize(("text", "kind", "value"), ANSWER_FORMATS)
def test_extract_answer_formats_with_explicit_kind(text: str, kind: str, value: str) -> None:
    answer = extract_answer(text, kind)
    assert answer is not None
    assert (answer.kind, answer.value) == (kind, value)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("", "auto"),
        ("   \n\t ", "auto"),
        ("no number here", "number"),
        ("A cat sat on the mat.", "choice"),
        ("Answer: 42", "choice"),
        ("I would say so.", "yesno"),
        ("", "text"),
    ],
)
def test_nothing_to_extract_gives_none(text: str, kind: str) -> None:
    assert extract_answer(text, kind) is None


def test_article_a_is_not_a_choice_in_auto() -> None:
    answer = extract_answer("A cat sat on 3 mats.")
    assert answer == Answer("number", "3", "3")


def test_word_containing_a_letter_after_answer_phrase_is_not_a_choice() -> None:
    assert extract_answer("The answer is Berlin.", "choice") is None
    assert extract_answer("The answer is Berlin.") == Answer("text", "berlin", "Berlin")


def test_raw_is_the_substring_the_answer_came_from() -> None:
    answer = extract_answer(r"Thus $\boxed{\frac{6}{8}}$.")
    assert answer == Answer("number", "0.75", r"\frac{6}{8}")


def test_unknown_kind_raises_value_error() -> None:
    with pytest.raises(ValueError, match="roman"):
        extract_answer("IV", "roman")


@pytest.mark.parametrize(
    "text", ["3/4", "6/8", "0.75", "0.750", r"\frac{3}{4}", r"\boxed{\dfrac{9}{12}}", ".75"]
)
def test_equal_values_share_one_canonical_form(text: str) -> None:
    assert extract_answer(text, "number").value == "0.75"


def test_different_values_stay_apart() -> None:
    values = {extract_answer(t, "number").value for t in ["1/3", "0.333", "0.3", "3", "-0.75"]}
    assert len(values) == 5


def test_integer_valued_forms_are_integers() -> None:
    for text in ["8/2", "4.0", "4", r"\frac{8}{2}", "4.000"]:
        assert extract_answer(text, "number").value == "4"


# ---------------------------------------------------------------- majority vote


def test_vote_groups_equal_numbers_and_counts_unparsed_in_the_share() -> None:
    texts = [
        "The answer is 3/4.",
        "So 0.75 of it.",
        "I don't know.",
        r"\boxed{\frac{6}{8}}",
        "It is 1/2.",
        "Half, i.e. 0.5",
    ]
    vote = majority_vote(texts)
    assert vote.kind == "number"
    assert vote.answer == "0.75"
    assert vote.voters == (0, 1, 3)
    assert vote.unparsed == (2,)
    assert vote.share == pytest.approx(3 / 6)
    assert vote.groups == (("0.75", (0, 1, 3)), ("0.5", (4, 5)))
    assert vote.answers[2] is None
    assert vote.answers[3] == Answer("number", "0.75", r"\frac{6}{8}")


def test_vote_tie_goes_to_the_group_voted_for_first() -> None:
    assert majority_vote(["7", "5", "5", "7"]).answer == "7"
    assert majority_vote(["5", "7", "7", "5"]).answer == "5"
    vote = majority_vote(["9", "5", "7", "7", "5"])
    assert vote.groups == (("5", (1, 4)), ("7", (2, 3)), ("9", (0,)))


def test_auto_vote_prefers_choice_on_a_tie_with_numbers() -> None:
    texts = ["(A) 12 apples", "The answer is B, i.e. 7.", "B) 7", "I am not sure."]
    vote = majority_vote(texts)
    assert vote.kind == "choice"
    assert vote.answer == "B"
    assert vote.voters == (1, 2)
    assert vote.unparsed == (3,)


def test_auto_vote_takes_the_kind_that_parses_most() -> None:
    texts = ["Yes, 2 is prime.", "No, 2 is even.", "There are 2.", "2"]
    assert majority_vote(texts).kind == "number"
    assert majority_vote(texts).answer == "2"
    assert majority_vote(texts[:2]).kind == "yesno"


def test_auto_vote_falls_back_to_text_only_when_nothing_structured_parses() -> None:
    vote = majority_vote(["Paris.", "The answer is paris", "Lyon"])
    assert vote.kind == "text"
    assert vote.answer == "paris"
    assert vote.voters == (0, 1)
    assert vote.share == pytest.approx(2 / 3)


def test_explicit_kind_is_used_for_every_sample() -> None:
    vote = majority_vote(["yes", "B", "12"], kind="number")
    assert vote.kind == "number"
    assert vote.voters == (2,)
    assert vote.unparsed == (0, 1)


def test_vote_with_nothing_parsed() -> None:
    vote = majority_vote(["", "  "], kind="number")
    assert (vote.answer, vote.share, vote.voters, vote.unparsed) == (None, 0.0, (), (0, 1))
    assert majority_vote([]).share == 0.0


def test_vote_to_json() -> None:
    data = majority_vote(["4", "4", "x", "5"]).to_json()
    assert data == {
        "answer": "4",
        "kind": "number",
        "share": 0.5,
        "voters": [0, 1],
        "unparsed": [2],
        "groups": [{"answer": "4", "voters": [0, 1]}, {"answer": "5", "voters": [3]}],
    }


def test_rank_by_vote_orders_groups_then_unparsed() -> None:
    vote = majority_vote(["5", "none", "7", "7", "5", "7"])
    ranking = rank_by_vote(vote)
    assert ranking.method == "vote"
    assert ranking.order == (2, 3, 5, 0, 4, 1)
    assert ranking.scores == pytest.approx((0.5, 0.5, 0.5, 1 / 3, 1 / 3, 0.0))


def test_rank_by_vote_equal_groups_first_voter_decides() -> None:
    ranking = rank_by_vote(majority_vote(["8", "3", "3", "8"]))
    assert ranking.order == (0, 3, 1, 2)


# ---------------------------------------------------------------- comparing rankings


@pytest.mark.parametrize(
    ("a", "b", "tau"),
    [
        ([0, 1, 2, 3], [0, 1, 2, 3], 1.0),
        ([0, 1, 2, 3], [3, 2, 1, 0], -1.0),
        # one adjacent swap: 5 concordant, 1 discordant pair of 6
        ([0, 1, 2, 3], [1, 0, 2, 3], 4 / 6),
        # b moves the last item first: pairs (0,1) concordant, (0,2) and (1,2) discordant
        ([0, 1, 2], [2, 0, 1], -1 / 3),
        # swapping the ends of 4 items: only the pair (1,2) keeps its order, 5 pairs flip
        ([0, 1, 2, 3], [3, 1, 2, 0], -4 / 6),
        ([5], [5], 1.0),
        ([], [], 1.0),
    ],
)
def test_kendall_tau_by_hand(a: list[int], b: list[int], tau: float) -> None:
    assert kendall_tau(a, b) == pytest.approx(tau)


def test_kendall_tau_is_symmetric() -> None:
    a, b = [3, 0, 4, 1, 2], [0, 1, 2, 3, 4]
    assert kendall_tau(a, b) == pytest.approx(kendall_tau(b, a))


@pytest.mark.parametrize(("a", "b"), [([0, 1, 2], [0, 1, 3]), ([0, 1, 1], [0, 1, 2]), ([0], [])])
def test_kendall_tau_rejects_different_samples(a: list[int], b: list[int]) -> None:
    with pytest.raises(ValueError):
        kendall_tau(a, b)


def test_kendall_tau_all_permutations_of_three_are_in_range_and_distinct_from_identity() -> None:
    taus = [kendall_tau([0, 1, 2], list(p)) for p in itertools.permutations([0, 1, 2])]
    assert sorted(taus) == pytest.approx([-1.0, -1 / 3, -1 / 3, 1 / 3, 1 / 3, 1.0])


def test_top_agrees_on_the_same_best_sample() -> None:
    a = Ranking("sum-logprob", (2, 0, 1), (-1.0, -2.0, -3.0))
    b = Ranking("mean-logprob", (2, 1, 0), (-0.1, -0.2, -0.3))
    c = Ranking("mean-logprob", (0, 2, 1), (-0.1, -0.2, -0.3))
    assert top_agrees(a, b)
    assert not top_agrees(a, c)


def test_top_agrees_counts_every_voter_of_the_winner_as_best() -> None:
    vote_ranking = rank_by_vote(majority_vote(["7", "5", "7", "5", "7"]))
    assert vote_ranking.order[0] == 0
    picked_voter = rank_by_scores([-3.0, -2.0, -1.0, -4.0, -5.0], "sum-logprob")
    picked_loser = rank_by_scores([-3.0, -1.0, -2.0, -4.0, -5.0], "sum-logprob")
    assert top_agrees(picked_voter, vote_ranking)
    assert top_agrees(vote_ranking, picked_voter)
    assert not top_agrees(picked_loser, vote_ranking)


def test_top_agrees_with_an_empty_ranking_is_false() -> None:
    empty = Ranking("vote", (), ())
    assert not top_agrees(empty, rank_by_scores([1.0], "reward"))
