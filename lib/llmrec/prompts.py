"""The one prompt builder every language-model notebook uses (Kang et al. 2023's format):
the user's most recent rated items — title, genres, rating — then the candidate's title and
genres, and the question."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class PromptTemplate:
    header: str = "Here is a user's rating history (1 = lowest, 5 = highest):"
    history_line: str = '* "{title}" ({genres}): {rating}'
    history_line_short: str = '* "{title}": {rating}'  # without genres: shorter prompts on CPU
    question: str = ('How would this user rate "{title}" ({genres})? '
                     "Answer with a single number from 1 to 5.")
    no_genres: str = "unknown genre"


DEFAULT_TEMPLATE = PromptTemplate()


def item_title(title: str, year) -> str:
    """"Toy Story (1995)" when the year is known, else just the title."""
    return f"{title} ({int(year)})" if pd.notna(year) else str(title)


def item_genres(genres: str, template: PromptTemplate = DEFAULT_TEMPLATE) -> str:
    return ", ".join(g for g in str(genres).split("|") if g) or template.no_genres


def build_prompt(history: list[tuple[str, str, int]], candidate: tuple[str, str],
                 template: PromptTemplate = DEFAULT_TEMPLATE, history_genres: bool = True,
                 extra: str = "") -> str:
    """history: (title, genres, rating) from most recent to oldest; candidate: (title, genres).

    Items are listed oldest first, as a person would read a diary. `history_genres=False` drops
    the genres of past items (the candidate keeps them): about a third fewer tokens. `extra` is
    a line inserted before the question (e.g. the averages of notebook 04).
    """
    lines = [template.header]
    line = template.history_line if history_genres else template.history_line_short
    for title, genres, rating in reversed(history):
        lines.append(line.format(title=title, genres=genres, rating=rating))
    if extra:
        lines.append(extra)
    title, genres = candidate
    lines.append(template.question.format(title=title, genres=genres))
    return "\n".join(lines)


def build_prompts(processed, examples: pd.DataFrame,
                  template: PromptTemplate = DEFAULT_TEMPLATE, history_genres: bool = True,
                  extras: list[str] | None = None, keep: list[int] | None = None) -> list[str]:
    """Prompts for rows of `processed.examples` (any split); `extras`: one extra line each;
    `keep`: how many of each row's most recent history items to show (None: all of them)."""
    items = processed.items.set_index("item_idx")
    titles = {i: item_title(t, y) for i, t, y in zip(items.index, items["title"], items["year"])}
    genres = {i: item_genres(g, template) for i, g in zip(items.index, items["genres"])}
    hist_items = processed.hist_items(examples)
    hist_ratings = processed.hist_ratings(examples)
    prompts = []
    extras = extras if extras is not None else [""] * len(examples)
    keep = keep if keep is not None else [None] * len(examples)
    rows = zip(examples["item_idx"].to_numpy(), hist_items, hist_ratings, extras, keep)
    for cand, h_items, h_ratings, extra, n in rows:
        history = [(titles[i], genres[i], int(r)) for i, r in zip(h_items, h_ratings) if i > 0]
        history = history[:n]  # most recent first
        prompts.append(build_prompt(history, (titles[cand], genres[cand]), template,
                                    history_genres, extra))
    return prompts


def average_lines(processed, examples: pd.DataFrame, item_word: str = "movie") -> list[str]:
    """One extra prompt line per example stating the user's and the candidate's average rating,
    from training ratings only. A training example's own rating is left out of both averages
    (leave-one-out), so the line never contains its target."""
    train = processed.train_ratings()
    by_user = train.groupby("user_idx")["rating"].agg(["sum", "count"])
    by_item = train.groupby("item_idx")["rating"].agg(["sum", "count"])
    own = (examples["split"] == "train").to_numpy() * examples["rating"].to_numpy()
    in_train = (examples["split"] == "train").to_numpy().astype(int)
    u_sum = examples["user_idx"].map(by_user["sum"]).fillna(0).to_numpy() - own
    u_n = examples["user_idx"].map(by_user["count"]).fillna(0).to_numpy() - in_train
    i_sum = examples["item_idx"].map(by_item["sum"]).fillna(0).to_numpy() - own
    i_n = examples["item_idx"].map(by_item["count"]).fillna(0).to_numpy() - in_train
    lines = []
    for us, un, its, inn in zip(u_sum, u_n, i_sum, i_n):
        user = f"{us / un:.1f} over {int(un)} ratings" if un > 0 else "unknown"
        item = f"{its / inn:.1f} over {int(inn)} ratings" if inn > 0 else "unknown (no ratings yet)"
        lines.append(f"This user's average rating: {user}. "
                     f"This {item_word}'s average rating by other users: {item}.")
    return lines


def item_texts(processed) -> list[str]:
    """Each item's text as a language model reads it once (the kit's item-level encoding):
    "Toy Story (1995): Adventure, Animation, Children", indexed by item_idx ("" for the padding
    row 0)."""
    texts = [""] * (processed.n_items + 1)
    for row in processed.items.itertuples():
        genres = ", ".join(g for g in str(row.genres).split("|") if g and g != "nan")
        texts[int(row.item_idx)] = item_title(row.title, row.year) + (f": {genres}" if genres else "")
    return texts
