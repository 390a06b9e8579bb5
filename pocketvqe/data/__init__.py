"""Training data: the offline corpus (``prepare_corpus``) and the on-the-fly mixture simulator.

>>> from pocketvqe.data import prepare_corpus, Simulator, SimConfig, make_eval_set   # doctest: +SKIP
>>> sim = Simulator(prepare_corpus(quick=True), "train", SimConfig(personalized=True), seed=0)  # doctest: +SKIP
"""
from .build import CorpusSizes
from .corpus import (
           ALL_SOURCES,
           DEFAULT_SOURCES,
           QUICK_SOURCES,
           corpus_root,
           default_root,
           prepare_corpus,
           resolve_sources,
)
from .evalset import load_eval_set, make_eval_set, save_eval_set
from .manifest import KINDS, SPLITS, CorpusEntry, Manifest, load_manifest
from .simulate import SCENARIOS, Mixture, SimConfig, Simulator, collate_mixtures

__all__ = ["ALL_SOURCES", "DEFAULT_SOURCES", "QUICK_SOURCES", "KINDS", "SPLITS", "SCENARIOS", "CorpusEntry",
           "CorpusSizes", "Manifest", "Mixture", "SimConfig", "Simulator", "collate_mixtures", "corpus_root", "default_root",
           "load_eval_set", "load_manifest", "make_eval_set", "prepare_corpus", "resolve_sources", "save_eval_set"]
