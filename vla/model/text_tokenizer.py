"""The embedded backbone's text tokenizer: a byte-level BPE fitted on the training prompts.

ByT5 spends one token per byte, about 40 tokens on a Meta-World prompt ("pick up a nut and place it onto a
peg; state:"), which was 40% of the training sequence. A BPE fitted on the prompts of the training data
gives each word it saw one token, so the same prompt costs about 10; and because it is byte-level, a word it
never saw (a paraphrase at evaluation) still tokenizes, into byte pieces, instead of failing or becoming UNK.

It is saved in the checkpoint in the `tokenizers` library's own JSON format (no pickle). Pretrained
backbones keep their own tokenizer: their embeddings were trained with it.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

FILE_NAME = "text_tokenizer.json"
PAD = "<pad>"
MAX_VOCAB = 4096  # a cap, never reached on instruction sets: BPE stops once every training word is one token


def fit_bpe(texts: list[str]) -> PreTrainedTokenizerFast:
    if not texts:
        raise ValueError("cannot fit a text tokenizer on no texts")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=MAX_VOCAB, min_frequency=1, special_tokens=[PAD], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(sorted(set(texts)), trainer)  # sorted: the same texts give the same ids
    return _wrap(tok)


def save(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> None:
    tokenizer.backend_tokenizer.save(str(Path(directory) / FILE_NAME))


def load(directory: str | Path) -> PreTrainedTokenizerFast:
    path = Path(directory) / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the checkpoint's fitted text tokenizer is missing")
    return _wrap(Tokenizer.from_file(str(path)))


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD)
