"""What each head is trained on: label sets, selection metrics, candidate data combinations, the
label mappings from other corpora (honest parent-genre mappings only; see MODELS.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from models_onnx.training.pools import Source


@dataclass(frozen=True)
class Head:
    """A single-label (softmax) head: label set, selection metric and candidate data."""

    task: str
    labels: tuple[str, ...]
    metric: str
    data: Mapping[str, tuple[Source, ...]]  # the first source of each is the scored target
    threshold_label: str | None = None
    reference: str | None = None
    # other validation rows: name -> (source, argmax only over the labels it defines?)
    secondary: Mapping[str, tuple[Source, bool]] = field(default_factory=dict)


def identity(labels: Sequence[str]) -> dict[str, str]:
    return {lab: lab for lab in labels}


ITUNES = "podcast_genre_itunes.jsonl"
GENRES = ("Arts", "Business", "Comedy", "Education", "Fiction", "Government",
          "Health & Fitness", "History", "Kids & Family", "Leisure", "Music", "News",
          "Religion & Spirituality", "Science", "Society & Culture", "Sports", "TV & Film",
          "Technology", "True Crime")
# Honest parent-genre mappings only; the other source labels are dropped (see MODELS.md).
SPOTIFY_TO_APPLE = {"Sports & Recreation": "Sports", "Lifestyle & Health": "Health & Fitness",
                    "Educational": "Education", "Games": "Leisure", "News & Politics": "News",
                    "True Crime": "True Crime"}
AG_TO_APPLE = {"World": "News", "Sports": "Sports", "Business": "Business",
               "Sci/Tech": "Technology"}
BBC_TO_APPLE = {"business": "Business", "politics": "News", "sport": "Sports",
                "tech": "Technology"}


def topic_head() -> Head:
    title = Source(ITUNES, identity(GENRES), "default")
    itunes = Source(ITUNES, identity(GENRES), "title_publisher")
    spotify = Source("podcast_category_spotify.jsonl", SPOTIFY_TO_APPLE)
    news = (Source("news_topic_ag.jsonl", AG_TO_APPLE), Source("news_topic_bbc.jsonl",
                                                                BBC_TO_APPLE))
    capped = tuple(Source(s.file, s.mapping, cap_per_label=100) for s in (spotify, *news))
    return Head("topic", GENRES, "accuracy", {
        "itunes[title]": (title,), "itunes[title.publisher]": (itunes,),
        "itunes[title.publisher]+spotify": (itunes, spotify),
        "itunes[title.publisher]+news": (itunes, *news),
        "itunes[title.publisher]+spotify+news": (itunes, spotify, *news),
        "itunes[title.publisher]+spotify+news(<=100/label/source)": (itunes, *capped),
    }, secondary={"itunes val, title only (no publisher)": (title, False),
                  "spotify val, title. description, 6 mapped genres (argmax over all 19)":
                      (spotify, False)})


def sentiment_head() -> Head:
    labels = ("negative", "neutral", "positive")
    tweets = Source("sentiment_tweeteval.jsonl", identity(labels))
    uci = Source("sentiment_uci.jsonl", {"negative": "negative", "positive": "positive"})
    sst2 = Source("sentiment_sst2.jsonl", {"negative": "negative", "positive": "positive"})
    return Head("sentiment", labels, "macro_recall", {
        "tweeteval": (tweets,), "tweeteval+uci": (tweets, uci), "tweeteval+sst2": (tweets, sst2),
        "tweeteval+uci+sst2": (tweets, uci, sst2)}, reference="sentiment",
        secondary={"sentiment_uci val (argmax of negative vs positive)": (uci, True),
                   "sentiment_sst2 val (argmax of negative vs positive)": (sst2, True)})


def spam_head() -> Head:
    return Head("spam", ("ham", "spam"), "average_precision",
                {"spam_sms": (Source("spam_sms.jsonl", identity(("ham", "spam"))),)},
                threshold_label="spam")


def emotion_head() -> Head:
    labels = ("anger", "joy", "optimism", "sadness")
    return Head("emotion", labels, "macro_f1",
                {"tweeteval": (Source("emotion_tweeteval.jsonl", identity(labels)),)},
                reference="emotion")


SAFETY: dict[str, tuple[Source, ...]] = {
    "offensive": (
        Source("offensive_olid.jsonl", {"OFF": "offensive", "NOT": "no"}),
        Source("offensive_tweeteval.jsonl", {"offensive": "offensive", "not-offensive": "no"}),
        Source("toxicity_davidson.jsonl",
               {"offensive": "offensive", "hate": "offensive", "neither": "no"})),
    "hate": (
        Source("hate_tweeteval.jsonl", {"hate": "hate", "not-hate": "no"}),
        Source("toxicity_davidson.jsonl", {"hate": "hate", "offensive": "no", "neither": "no"})),
    "explicit": (Source("podcast_explicit.jsonl", {"explicit": "explicit", "clean": "no"}),),
}
SAFETY_REFERENCES = {"offensive": "offensive_tweeteval.jsonl", "hate": "hate_tweeteval.jsonl"}
