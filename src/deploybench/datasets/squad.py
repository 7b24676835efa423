"""A SQuAD v1.1-format question-answering data set, generated (deterministic, English-like),
and the WordPiece vocabulary trained on it.

Files written into the data folder:

- ``dev-v1.1.json``: the SQuAD v1.1 format: ``{"version": "1.1", "data": [{"title",
  "paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text",
  "answer_start"}]}]}]}]}``. Every answer is a span of its context at ``answer_start``.
- ``index.json``: for every question id, the byte offset and length of its paragraph
  object inside ``dev-v1.1.json``.
- ``vocab.txt``: an uncased WordPiece vocabulary of 4,000 pieces trained with the
  ``tokenizers`` library (``BertWordPieceTokenizer.train``), offline, on a separate generated
  "pre-training" text of 3,000 paragraphs' worth -- as BERT's vocabulary was trained on
  Wikipedia, not on SQuAD -- so unseen names split into word pieces as in real text
  (``torperis`` -> ``torper ##is``), about 1.4 tokens per word.
- ``manifest.json``: the question ids (one request = one question).

DESIGN: one request reads its input from disk the way a QA service gets (context, question)
per request: ``seek`` to its paragraph in the real SQuAD file, read those bytes and parse
them as JSON (see ``read_paragraph``). The byte-offset index is loaded once, untimed, like
MLPerf's QSL; reading and parsing happen per request, timed. One big SQuAD file (not a file
per question) keeps the data set in the format tools expect, and the paragraph read is
about the size of a per-question file.

Contexts vary like SQuAD's: most are 4-12 sentences (60-200 tokens); every sixth paragraph
(starting with the third) is long (35-60 sentences, 500-900 tokens) and needs several
384-token windows.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from . import write_manifest

SQUAD_FILE = "dev-v1.1.json"
INDEX_FILE = "index.json"
VOCAB_FILE = "vocab.txt"

_SYLLABLES = ("al", "ber", "ca", "dor", "el", "fan", "gor", "ha", "is", "jo", "ka", "len",
              "mor", "na", "os", "per", "qui", "ran", "sel", "tor", "u", "van", "wes", "yl",
              "zan", "mi", "ro", "the", "an", "ia")
_NOUNS = ("river", "bridge", "library", "cathedral", "railway", "harbour", "university",
          "treaty", "festival", "museum", "fortress", "canal", "market", "observatory",
          "parliament", "academy", "garden", "mill", "tower", "orchestra", "council",
          "expedition", "newspaper", "hospital", "lighthouse", "monastery", "theatre", "mine")
_ADJECTIVES = ("old", "northern", "great", "royal", "ancient", "famous", "eastern", "small",
               "independent", "wooden", "national", "central", "southern", "modern",
               "western", "public", "first", "largest", "historic", "local")
_VERBS = (("built", "build"), ("founded", "found"), ("destroyed", "destroy"),
          ("restored", "restore"), ("described", "describe"), ("designed", "design"),
          ("visited", "visit"), ("expanded", "expand"), ("funded", "fund"),
          ("opened", "open"), ("studied", "study"), ("governed", "govern"))
_UNITS = ("workers", "students", "ships", "books", "soldiers", "visitors", "families",
          "paintings", "members", "houses", "bells", "windows")
_FILLERS = (
    "Historians still debate the details of this period, and many records were lost.",
    "The region is known for its mild climate and its long tradition of trade.",
    "Several later accounts repeat the same story with small differences.",
    "During the following decades the population of the area grew steadily.",
    "Most of the original documents are now kept in the city archive.",
    "The event is remembered every year with a public ceremony.",
    "According to a later survey, the site was in poor condition by the end of the century.",
    "Its influence on the surrounding towns was considerable.",
)


def _name(rng: np.random.Generator, parts: int) -> str:
    return "".join(rng.choice(_SYLLABLES, size=parts)).capitalize()


def _person(rng: np.random.Generator) -> str:
    return f"{_name(rng, int(rng.integers(2, 4)))} {_name(rng, int(rng.integers(2, 4)))}"


def _fact(rng: np.random.Generator, place: str) -> tuple[str, list[tuple[str, str]]]:
    """One sentence and the (question, answer) pairs it can answer."""
    noun, adj = str(rng.choice(_NOUNS)), str(rng.choice(_ADJECTIVES))
    past, base = _VERBS[int(rng.integers(len(_VERBS)))]
    person, year = _person(rng), str(int(rng.integers(1450, 2020)))
    count, unit = str(int(rng.integers(3, 5000))), str(rng.choice(_UNITS))
    kind = int(rng.integers(3))
    if kind == 0:
        sentence = f"{person} {past} the {adj} {noun} of {place} in {year}."
        qas = [(f"Who {past} the {adj} {noun} of {place}?", person),
               (f"In what year was the {adj} {noun} of {place} {past}?", year)]
    elif kind == 1:
        sentence = (f"In {year}, the {noun} near {place} was {past} by {person}, "
                    f"who employed {count} {unit}.")
        qas = [(f"How many {unit} did {person} employ?", count),
               (f"By whom was the {noun} near {place} {past}?", person)]
    else:
        sentence = (f"The {adj} {noun} that {person} helped {base} in {year} "
                    f"later held {count} {unit}.")
        qas = [(f"How many {unit} did the {adj} {noun} later hold?", count),
               (f"Who helped {base} the {adj} {noun}?", person)]
    return sentence, qas


def _paragraph(rng: np.random.Generator, place: str, long: bool, para_index: int,
               questions: int, seed: int) -> dict[str, Any]:
    sentences: list[str] = []
    candidates: list[tuple[int, str, str]] = []  # (sentence number, question, answer)
    n = int(rng.integers(35, 61)) if long else int(rng.integers(4, 13))
    for _ in range(n):
        if rng.random() < 0.3:
            sentences.append(str(rng.choice(_FILLERS)))
            continue
        sentence, qas = _fact(rng, place)
        candidates += [(len(sentences), q, a) for q, a in qas]
        sentences.append(sentence)
    if not candidates:  # at least one fact per paragraph
        sentence, qas = _fact(rng, place)
        candidates += [(len(sentences), q, a) for q, a in qas]
        sentences.append(sentence)
    starts, pos = [], 0
    for s in sentences:
        starts.append(pos)
        pos += len(s) + 1
    context = " ".join(sentences)
    order = rng.permutation(len(candidates))
    if long:  # ask about the end of long contexts too: the answer is in a late window
        order = np.concatenate([[len(candidates) - 1], order[order != len(candidates) - 1]])
    qas_out = []
    for k in order[:questions]:
        sent_no, question, answer = candidates[int(k)]
        start = context.index(answer, starts[sent_no])
        assert context[start:start + len(answer)] == answer
        qid = hashlib.sha1(f"{seed}-{para_index}-{k}".encode()).hexdigest()[:24]
        qas_out.append({"id": qid, "question": question,
                        "answers": [{"text": answer, "answer_start": start}]})
    return {"context": context, "qas": qas_out}


def generate_squad(count: int, seed: int) -> dict[str, Any]:
    """A SQuAD v1.1 document with exactly ``count`` questions."""
    rng = np.random.default_rng(seed)
    articles: list[dict[str, Any]] = []
    made, para_index = 0, 0
    while made < count:
        place = _name(rng, int(rng.integers(2, 4)))
        article = {"title": place, "paragraphs": []}
        for _ in range(int(rng.integers(2, 6))):
            if made >= count:
                break
            long = para_index % 6 == 2
            wanted = min(count - made, int(rng.integers(1, 5)))
            para = _paragraph(rng, place, long, para_index, wanted, seed)
            article["paragraphs"].append(para)
            made += len(para["qas"])
            para_index += 1
        articles.append(article)
    return {"version": "1.1", "data": articles}


def write_squad(doc: dict[str, Any], path: Path) -> dict[str, list[int]]:
    """Write ``doc`` as valid SQuAD JSON; return ``{qa id: [byte offset, length]}`` of each
    question's paragraph object in the file."""
    index: dict[str, list[int]] = {}
    chunks: list[bytes] = []
    pos = 0

    def put(data: bytes) -> None:
        nonlocal pos
        chunks.append(data)
        pos += len(data)

    put(b'{"version": ' + json.dumps(doc["version"]).encode() + b', "data": [')
    for a, article in enumerate(doc["data"]):
        put((", " if a else "") .encode() + b'{"title": ' + json.dumps(article["title"]).encode()
            + b', "paragraphs": [')
        for p, para in enumerate(article["paragraphs"]):
            if p:
                put(b", ")
            data = json.dumps(para, ensure_ascii=False).encode("utf-8")
            for qa in para["qas"]:
                index[qa["id"]] = [pos, len(data)]
            put(data)
        put(b"]}")
    put(b"]}\n")
    Path(path).write_bytes(b"".join(chunks))
    return index


def read_paragraph(squad_path: Path, offset: int, length: int) -> dict[str, Any]:
    """One paragraph object (context + qas) read from the SQuAD file on disk (a timed
    input read) and parsed."""
    from ..apps.base import read_input

    return json.loads(read_input(squad_path, offset, length))


VOCAB_SIZE = 4000
CORPUS_QUESTIONS = 3000


def train_vocabulary(doc: dict[str, Any], out_dir: Path, vocab_size: int = VOCAB_SIZE) -> Path:
    """Train an uncased WordPiece vocabulary on the document's text; write ``vocab.txt``."""
    from tokenizers import BertWordPieceTokenizer

    corpus = out_dir / "corpus.txt"
    with open(corpus, "w", encoding="utf-8") as f:
        for article in doc["data"]:
            f.write(article["title"] + "\n")
            for para in article["paragraphs"]:
                f.write(para["context"] + "\n")
                for qa in para["qas"]:
                    f.write(qa["question"] + "\n")
        # the fixed English word lists, so every generated word is in the corpus at least
        # once whatever the data set's size
        f.write(" ".join(_NOUNS + _ADJECTIVES + _UNITS + tuple(v for p in _VERBS for v in p)
                         + _FILLERS) + "\n")
    tokenizer = BertWordPieceTokenizer(lowercase=True, strip_accents=True, clean_text=True)
    tokenizer.train([str(corpus)], vocab_size=vocab_size, min_frequency=1,
                    limit_alphabet=1000, show_progress=False,
                    special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    corpus.unlink()
    tokenizer.save_model(str(out_dir))  # writes vocab.txt
    return out_dir / VOCAB_FILE


def load_tokenizer(data_dir: Path):
    """The data set's WordPiece tokenizer (uncased), read from its ``vocab.txt``."""
    from tokenizers import BertWordPieceTokenizer

    return BertWordPieceTokenizer(str(Path(data_dir) / VOCAB_FILE), lowercase=True,
                                  strip_accents=True, clean_text=True)


def generate_squad_dataset(out_dir: Path, count: int, seed: int) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = generate_squad(count, seed)
    index = write_squad(doc, out_dir / SQUAD_FILE)
    (out_dir / INDEX_FILE).write_text(json.dumps({"schema": 1, "squad": SQUAD_FILE,
                                                  "paragraphs": index}))
    train_vocabulary(generate_squad(CORPUS_QUESTIONS, seed + 10_000), out_dir)
    ids = [qa["id"] for article in doc["data"] for para in article["paragraphs"]
           for qa in para["qas"]]
    write_manifest(out_dir, "nlp", count, seed, ids, squad=SQUAD_FILE, index=INDEX_FILE,
                   vocab=VOCAB_FILE)
