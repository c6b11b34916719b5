"""Caption metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr exactly as pycocoevalcap computes them.

The same steps as coco-caption's `COCOEvalCap.evaluate`: both sides go through the PTB
tokenizer (Java, lower-cased, punctuation removed), then each scorer runs on the tokenized
texts. Scores are scaled x100, like the paper's tables. SPICE needs Stanford CoreNLP models that
it downloads on first use, which this offline pipeline cannot do, so it is left out.

Inputs are checked before anything reaches Java: an empty candidate or reference, or ids that
do not match, would otherwise crash deep inside a Java subprocess (or hang METEOR).

Two pycocoevalcap traps handled here. Its PTB tokenizer writes all captions to one file, one per
line, replacing only "\n": a "\r", "\v", "\f", "\u2028" or "\u2029" inside a caption makes Java
emit extra lines and every later caption is silently scored against the wrong image's references,
so whitespace is collapsed to single spaces first (the tokenizer splits on whitespace anyway, so
ordinary text scores the same). And it writes that file into its own package folder, which must
therefore be writable.

CIDEr here is coco-caption's CIDEr-D, which multiplies each image's score by a Gaussian of the
candidate's length difference to each reference, exp(-delta^2 / (2 * 6^2)) in PTB tokens. Made
for COCO's ten-word captions, on RSICap-length captions (60-100 words) it dominates: the val
references scored against themselves give 1000; with their last sentence dropped 275, with two
dropped 10; with their own words intact but no length penalty 942 and 885. So `score` also
returns, as diagnostics beside the standard metrics (`LENGTH_DIAGNOSTICS`):
`CIDEr-nolen`, the same CIDEr-D with the length penalty off (content without length luck);
`length_gap`, the mean absolute length difference (PTB tokens) to the references; and
`length_factor`, the mean of CIDEr-D's Gaussian (percent; 100 = lengths match).
"""
from __future__ import annotations

import atexit
import contextlib
import math
import os
import shutil
from pathlib import Path

from rsmoe.errors import InputError

METRICS: tuple[str, ...] = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
LENGTH_DIAGNOSTICS: tuple[str, ...] = ("CIDEr-nolen", "length_gap", "length_factor")
CIDER_SIGMA = 6.0  # coco-caption's CIDEr-D length penalty width, in PTB tokens
SPICE_NOTE = ("SPICE is not computed: pycocoevalcap's SPICE downloads Stanford CoreNLP models on "
              "first use and this pipeline runs offline")


class EvaluationError(InputError):
    """Candidates or references that cannot be scored; names the record and the fix."""


def _check(candidates: dict[str, str], references: dict[str, list[str]], source: str) -> None:
    if not candidates:
        raise EvaluationError(source, "no candidate captions to score", "generate captions for at least one image")
    missing = sorted(set(candidates) - set(references), key=str)
    if missing:
        raise EvaluationError(source, f"{len(missing)} candidates have no references (first: {missing[0]!r})",
                              "score only images that have reference captions", record=str(missing[0]))
    extra = sorted(set(references) - set(candidates), key=str)
    if extra:
        raise EvaluationError(source, f"{len(extra)} references have no candidate (first: {extra[0]!r})",
                              "caption every referenced image, or drop its references", record=str(extra[0]))
    for key, text in candidates.items():
        if not isinstance(text, str) or not text.strip():
            raise EvaluationError(source, "the candidate caption is empty", "a model must write at least one word; "
                                  "check max_new_tokens and the model's end-of-text handling", record=str(key))
    for key, refs in references.items():
        if not refs or any(not isinstance(r, str) or not r.strip() for r in refs):
            raise EvaluationError(source, "an empty reference caption", "drop empty references from the annotations",
                                  record=str(key))
    if shutil.which("java") is None:
        raise EvaluationError(source, "java not found: pycocoevalcap's tokenizer and METEOR run on Java",
                              "install Java 17 (e.g. `apt-get install openjdk-17-jre-headless`)")
    from pycocoevalcap.tokenizer import ptbtokenizer

    folder = Path(ptbtokenizer.__file__).parent
    if not os.access(folder, os.W_OK):
        raise EvaluationError(source, f"pycocoevalcap's PTB tokenizer writes its temporary file into {folder}, "
                              "which is not writable", "install pycocoevalcap into a virtualenv this user can write")


# One METEOR Java process serves every score() call of this Python process: starting it (and
# loading its paraphrase tables) took ~10 s of the ~12 s one score() took on a 2-core machine, and
# evaluate scores a dozen caption rows. Its EVAL line is scored from the stats it carries only,
# so a reused process gives the same numbers as a fresh one (tested).
_METEOR = None


def _meteor(gts: dict, res: dict) -> float:
    global _METEOR
    from pycocoevalcap.meteor.meteor import Meteor

    if _METEOR is None or _METEOR.meteor_p.poll() is not None:
        _METEOR = Meteor()
    try:
        return _METEOR.compute_score(gts, res)[0]
    except BaseException:
        close_meteor()  # a process left mid-line would answer the next call out of step
        raise


def close_meteor() -> None:
    """Stop the shared METEOR process (also at interpreter exit); the next score() starts one."""
    global _METEOR
    scorer, _METEOR = _METEOR, None
    if scorer is None:
        return
    if scorer.lock.locked():  # compute_score raised holding it: Meteor.__del__ would then wait forever
        scorer.lock.release()
    proc = scorer.meteor_p
    proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        # when Java died mid-run, closing stdin flushes into a dead pipe; the error that stopped
        # compute_score is the one to show, so only that BrokenPipeError is dropped
        with contextlib.suppress(BrokenPipeError):
            stream.close()


atexit.register(close_meteor)


def _one_line(text: str) -> str:
    # str.split() also splits on "\r", "\v", "\f", "\x1c"-"\x1e", "\x85", "\u2028", "\u2029"
    return " ".join(text.split())


def score(candidates: dict[str, str], references: dict[str, list[str]], *,
          source: str | Path = "<captions>") -> dict[str, float]:
    """{id: caption} against {id: [reference, ...]} -> {BLEU-1..4, METEOR, ROUGE-L, CIDEr} x100,
    then the length diagnostics (`LENGTH_DIAGNOSTICS`, see the module doc).

    `source` names the data in error messages (a file, or a split). CIDEr's document frequencies
    come from the references given, as in coco-caption: score a whole split in one call.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    _check(candidates, references, str(source))
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": _one_line(r)} for r in v] for k, v in references.items()})
    res = tokenizer.tokenize({k: [{"caption": _one_line(candidates[k])}] for k in references})
    for key, (text,) in res.items():
        if not text.strip():  # e.g. a candidate of punctuation only
            raise EvaluationError(str(source), "the candidate has no words after tokenization",
                                  "a caption needs at least one word", record=str(key))
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"BLEU-{i + 1}": b for i, b in enumerate(bleu)}
    out["METEOR"] = _meteor(gts, res)
    out["ROUGE-L"] = Rouge().compute_score(gts, res)[0]
    out["CIDEr"] = Cider(sigma=CIDER_SIGMA).compute_score(gts, res)[0]
    scored = {k: float(out[k]) * 100 for k in METRICS}
    return {**scored, **length_diagnostics(gts, res)}


def length_diagnostics(gts: dict, res: dict) -> dict[str, float]:
    """PTB-tokenized references and candidates -> CIDEr-D without its length penalty (x100), the
    mean absolute length difference to the references (tokens) and the mean length factor (%)."""
    from pycocoevalcap.cider.cider import Cider

    gaps, factors = [], []
    for key, (cand,) in res.items():
        deltas = [len(cand.split()) - len(r.split()) for r in gts[key]]
        gaps.append(sum(map(abs, deltas)) / len(deltas))
        factors.append(sum(math.exp(-d * d / (2 * CIDER_SIGMA ** 2)) for d in deltas) / len(deltas))
    return {"CIDEr-nolen": float(Cider(sigma=math.inf).compute_score(gts, res)[0]) * 100,
            "length_gap": sum(gaps) / len(gaps), "length_factor": 100 * sum(factors) / len(factors)}


def score_aspects(candidates: dict[str, dict[str, str]], references: dict[str, dict[str, str]], *,
                  source: str | Path = "<captions>") -> dict[str, dict]:
    """Per-aspect scores: each expert's segment against the reference's segment of its aspect.

    Both sides map image id -> {aspect (expert name): segment}. For each aspect, images whose
    reference segment is empty are skipped (nothing to compare with); an image whose reference
    has the segment but whose generated segment is empty is counted in `missing` and left out of
    the scores (pycocoevalcap cannot score an empty text). Returns {aspect: {metrics..., n, missing}};
    an aspect without any scorable pair is omitted.
    """
    aspects = list(dict.fromkeys(a for segs in references.values() for a in segs))
    out: dict[str, dict] = {}
    for aspect in aspects:
        cands, refs, missing = {}, {}, 0
        for key, segs in references.items():
            ref = (segs.get(aspect) or "").strip()
            if not ref:
                continue
            cand = (candidates.get(key, {}).get(aspect) or "").strip()
            if not cand:
                missing += 1
                continue
            cands[key], refs[key] = cand, [ref]
        if cands:
            out[aspect] = {**score(cands, refs, source=f"{source}, aspect {aspect}"), "n": len(cands), "missing": missing}
    return out
