from llmrec.prompts import PromptTemplate, build_prompt, build_prompts, item_genres, item_title
from llmrec.splits import build_processed


def test_build_prompt_lists_history_oldest_first_then_asks():
    text = build_prompt([("B (2001)", "Drama", 3), ("A (2000)", "Action, Comedy", 5)],
                        ("C (2002)", "Horror"))
    assert text == (
        "Here is a user's rating history (1 = lowest, 5 = highest):\n"
        '* "A (2000)" (Action, Comedy): 5\n'
        '* "B (2001)" (Drama): 3\n'
        'How would this user rate "C (2002)" (Horror)? Answer with a single number from 1 to 5.')


def test_title_and_genre_formatting():
    assert item_title("Heat", 1995) == "Heat (1995)"
    assert item_title("Untitled", None) == "Untitled"
    assert item_genres("Drama|Comedy") == "Drama, Comedy"
    assert item_genres("") == "unknown genre"


def test_build_prompts_uses_each_examples_own_history(synthetic):
    p = build_processed(synthetic, history_len=2)
    ex = p.examples.iloc[[0, 5]]
    prompts = build_prompts(p, ex, PromptTemplate(header="H", history_line="{title}={rating}",
                                                  question="? {title}"))
    items = p.items.set_index("item_idx")
    for text, (_, row) in zip(prompts, ex.iterrows()):
        lines = text.split("\n")
        assert lines[0] == "H" and len(lines) == 2 + row.hist_len
        cand = items.loc[row.item_idx]
        assert lines[-1] == f"? {cand.title} ({cand.year})"
        newest = items.loc[row.hist_item_0]
        assert lines[-2] == f"{newest.title} ({newest.year})={row.hist_rating_0}"
