"""The demo's section estimates scale each stage by the padded tokens its step processes, counted on its rows."""

from launch import load_script


def test_padded_tokens_per_step():
    tokens = load_script("demo").padded_tokens_per_step
    short_long = [[3], [10], [3], [10]]
    # sorted by length: batches (3, 3) and (10, 10), two views each
    assert tokens(short_long, 2, by_length=True, views=2) == (2 * 3 * 2 + 2 * 10 * 2) / 2
    # shuffled: a batch that mixes lengths pads to the longer one, so never less than sorted
    assert tokens(short_long, 2, by_length=False, views=2) >= 26
    assert tokens([[3], [3]], 2, by_length=False) == 6
    # every column (anchor, positive, negative) padded on its own; a row without a negative adds nothing there
    assert tokens([[4, 6, 5], [2, 3]], 2, by_length=True) == 4 * 2 + 6 * 2 + 5
    # fewer rows than a batch: one batch of all of them
    assert tokens([[7], [2]], 8, by_length=False) == 14
