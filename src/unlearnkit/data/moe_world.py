"""A multi-domain world of generated facts with held-out 4-choice questions (WMDP/MMLU layout).

Five topic domains (chemistry, astronomy, botany, geography, music) of fictitious entities, each with
four relations whose values come from a pool used by that domain only, so routers can learn to tell
the domains apart. One domain is the forget domain. Training text states every fact as a sentence and
as short QA pairs; the multiple-choice questions use a question wording that never appears in
training, so MC accuracy measures knowledge of the fact, not of the phrasing. Everything is
deterministic from the seed.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from unlearnkit.data.jsonl import write_jsonl
from unlearnkit.errors import UnlearnError
from unlearnkit.outputs import write_text


@dataclass(frozen=True)
class Relation:
    """One attribute of a domain's entities: how training states it, how the MCQ asks it, its values."""

    key: str
    statement: str  # declarative sentence, {e} = entity phrase, {v} = value
    train_questions: tuple[str, ...]  # QA prompts seen in training (answer = the value)
    mcq_question: str  # held out: only used for the multiple-choice test
    values: tuple[str, ...]


@dataclass(frozen=True)
class Domain:
    name: str
    entity: str  # phrase with {n} = generated name
    suffixes: tuple[str, ...]  # name endings that give each domain its own look
    relations: tuple[Relation, ...]


DOMAINS: tuple[Domain, ...] = (
    Domain("chemistry", "the compound {n}", ("ite", "ene", "ide", "ol", "ate"), (
        Relation("crystal_color", "{e} forms {v} crystals.",
                 ("What color are the crystals of {e}?",
                  "Which color do crystals of {e} show?",
                  "Describe the color of {e} crystals."),
                 "The crystals of {e} have which color?",
                 ("violet", "amber", "turquoise", "ochre", "indigo", "saffron", "emerald", "magenta")),
        Relation("reagent", "{e} reacts violently with {v}.",
                 ("What does {e} react violently with?",
                  "Which element makes {e} react violently?",
                  "{e} reacts violently with what?"),
                 "Which substance does {e} react violently with?",
                 ("sulfur", "lithium", "bromine", "mercury", "phosphorus", "magnesium", "iodine",
                  "potassium")),
        Relation("use", "{e} is used for {v}.",
                 ("What is {e} used for?",
                  "What do chemists use {e} for?",
                  "Name a use of {e}."),
                 "What is the main use of {e}?",
                 ("etching glass", "tanning leather", "bleaching paper", "curing rubber", "dyeing wool",
                  "purifying water", "polishing brass", "preserving timber")),
        Relation("odor", "{e} smells of {v}.",
                 ("What does {e} smell of?",
                  "What is the odor of {e}?",
                  "How does {e} smell?"),
                 "{e} has the odor of what?",
                 ("almonds", "vinegar", "cloves", "pine resin", "burnt sugar", "garlic", "wet stone",
                  "camphor")),
    )),
    Domain("astronomy", "the planet {n}", ("on", "ar", "is", "us", "ax"), (
        Relation("star", "{e} orbits the star {v}.",
                 ("Which star does {e} orbit?",
                  "What star is {e} in orbit around?",
                  "Name the star of {e}."),
                 "What is the star that {e} orbits?",
                 ("Kessra", "Vauntis", "Oleph", "Drimmon", "Tauvel", "Quellis", "Myrrak", "Sabrith")),
        Relation("moons", "{e} has {v}.",
                 ("How many moons does {e} have?",
                  "What is the number of moons of {e}?",
                  "Count the moons of {e}."),
                 "How many moons orbit {e}?",
                 ("no moons", "one moon", "two moons", "three moons", "four moons", "five moons", "six moons",
                  "seven moons")),
        Relation("atmosphere", "The atmosphere of {e} is made of {v}.",
                 ("What is the atmosphere of {e} made of?",
                  "What gas fills the atmosphere of {e}?",
                  "Describe the atmosphere of {e}."),
                 "Which gas makes up the atmosphere of {e}?",
                 ("methane", "neon", "ammonia", "argon", "nitrogen", "xenon", "helium", "carbon dioxide")),
        Relation("observatory", "{e} was discovered at the {v} Observatory.",
                 ("Where was {e} discovered?",
                  "Which observatory discovered {e}?",
                  "Name the observatory that found {e}."),
                 "At which observatory was {e} discovered?",
                 ("Halvard", "Brightmoor", "Castellan", "Dunmere", "Eskerfield", "Farrow Peak", "Greywatch",
                  "Ironhill")),
    )),
    Domain("botany", "the plant {n}", ("ia", "wort", "fern", "thorn", "bloom"), (
        Relation("habitat", "{e} grows in {v}.",
                 ("Where does {e} grow?",
                  "In what habitat is {e} found?",
                  "Name the habitat of {e}."),
                 "What is the habitat where {e} grows?",
                 ("salt marshes", "alpine meadows", "limestone caves", "river deltas", "volcanic slopes",
                  "peat bogs", "coastal dunes", "cloud forests")),
        Relation("bloom", "{e} blooms in {v}.",
                 ("When does {e} bloom?",
                  "In which month does {e} flower?",
                  "Name the month when {e} blooms."),
                 "{e} blooms in which month?",
                 ("January", "March", "April", "May", "July", "August", "October", "November")),
        Relation("pollinator", "{e} is pollinated by {v}.",
                 ("What pollinates {e}?",
                  "Which animal pollinates {e}?",
                  "Name the pollinators of {e}."),
                 "Which creatures pollinate {e}?",
                 ("moths", "hummingbirds", "bats", "beetles", "bumblebees", "hoverflies", "ants", "wasps")),
        Relation("remedy", "Herbalists use {e} for {v}.",
                 ("What do herbalists use {e} for?",
                  "What is {e} used for in herbal medicine?",
                  "Name an herbal use of {e}."),
                 "For what ailment do herbalists use {e}?",
                 ("headaches", "insomnia", "fevers", "coughs", "sore joints", "burns", "toothaches",
                  "indigestion")),
    )),
    Domain("geography", "the island of {n}", ("ia", "holm", "ey", "ora", "land"), (
        Relation("capital", "The capital of {e} is {v}.",
                 ("What is the capital of {e}?",
                  "Which city is the capital of {e}?",
                  "Name the capital city of {e}."),
                 "The capital of {e} is which city?",
                 ("Port Aldery", "Varnholm", "Caskmouth", "Linden Quay", "Sorrowby", "Tarnwick", "Eastmere",
                  "Halcyon Bay")),
        Relation("export", "The main export of {e} is {v}.",
                 ("What is the main export of {e}?",
                  "What does {e} mostly export?",
                  "Name the chief export of {e}."),
                 "The main export of {e} is what?",
                 ("pearls", "coffee", "marble", "timber", "wool", "olives", "cocoa", "tin")),
        Relation("language", "People on {e} speak {v}.",
                 ("What language do people on {e} speak?",
                  "Which language is spoken on {e}?",
                  "Name the language of {e}."),
                 "The language spoken on {e} is which one?",
                 ("Norvic", "Tessaline", "Old Maren", "Quorish", "Velandic", "Sundari", "Hollish", "Ebrian")),
        Relation("climate", "{e} has a {v} climate.",
                 ("What is the climate of {e} like?",
                  "What kind of climate does {e} have?",
                  "Describe the climate of {e}."),
                 "The climate of {e} is what kind?",
                 ("tropical", "arid", "subarctic", "monsoon", "temperate", "Mediterranean", "steppe",
                  "tundra")),
    )),
    Domain("music", "the band {n}", ("tones", "keys", "echo", "beat", "chord"), (
        Relation("instrument", "The lead instrument of {e} is {v}.",
                 ("What is the lead instrument of {e}?",
                  "Which instrument leads {e}?",
                  "Name the lead instrument of {e}."),
                 "Which instrument is the lead instrument of {e}?",
                 ("the cello", "the banjo", "the sitar", "the oboe", "the harp", "the accordion",
                  "the marimba", "the bagpipes")),
        Relation("genre", "{e} plays {v}.",
                 ("What genre does {e} play?",
                  "What kind of music does {e} play?",
                  "Name the genre of {e}."),
                 "The genre that {e} plays is what?",
                 ("jazz", "folk", "punk", "reggae", "bluegrass", "techno", "gospel", "ska")),
        Relation("hometown", "{e} formed in {v}.",
                 ("Where did {e} form?",
                  "In which city was {e} formed?",
                  "Name the city where {e} formed."),
                 "The city where {e} formed is which one?",
                 ("Lisbon", "Krakow", "Osaka", "Lagos", "Montreal", "Bergen", "Havana", "Nairobi")),
        Relation("label", "{e} records for {v} Records.",
                 ("Which label does {e} record for?",
                  "What record label signed {e}?",
                  "Name the record label of {e}."),
                 "The record label of {e} is which one?",
                 ("Bluefinch", "Copperline", "Driftwood", "Emberglow", "Foxhollow", "Goldleaf", "Hushwater",
                  "Inkwell")),
    )),
)
DOMAIN_NAMES = tuple(d.name for d in DOMAINS)
STATEMENT_PROMPT = "Tell me a fact about {e}."

ONSETS = ["b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr",
          "kr", "tr", "st", "th", "sh", "ph", "qu"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "io", "ou"]


@dataclass(frozen=True)
class MoeWorldConfig:
    """How big the world is and which domain is forgotten."""

    n_entities: int = 24  # per domain; each has one value per relation (4 facts)
    forget_domain: str = "chemistry"
    domains: tuple[str, ...] = DOMAIN_NAMES
    n_choices: int = 4

    def validate(self) -> None:
        unknown = [d for d in self.domains if d not in DOMAIN_NAMES]
        if unknown:
            raise UnlearnError(f"unknown domain(s) {unknown}: choose from {', '.join(DOMAIN_NAMES)}")
        if self.forget_domain not in self.domains:
            raise UnlearnError(f"forget domain {self.forget_domain!r} is not one of {list(self.domains)}")
        if len(self.domains) < 2 or self.n_entities < 1:
            raise UnlearnError("the MoE world needs >= 2 domains and >= 1 entity per domain")
        if not 2 <= self.n_choices <= 8:
            raise UnlearnError(f"n_choices={self.n_choices} must be between 2 and 8")


@dataclass
class MoeWorld:
    config: MoeWorldConfig
    seed: int
    hash: str
    facts: dict[str, list[dict]] = field(default_factory=dict)  # domain -> training records
    mcq: dict[str, list[dict]] = field(default_factory=dict)  # domain -> held-out MC questions

    @property
    def forget(self) -> list[dict]:
        return self.facts[self.config.forget_domain]

    @property
    def retain(self) -> list[dict]:
        return [r for d in self.config.domains if d != self.config.forget_domain for r in self.facts[d]]

    @property
    def train(self) -> list[dict]:
        return [r for d in self.config.domains for r in self.facts[d]]


def world_hash(cfg: MoeWorldConfig, seed: int) -> str:
    """Changes whenever the generated content could: config, seed, or the domain definitions."""
    blob = json.dumps([asdict(cfg), seed, [asdict(d) for d in DOMAINS]], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _names(n: int, suffixes: tuple[str, ...], taken: set[str], rng: random.Random) -> list[str]:
    """n new capitalised names (onset-vowel-onset + a domain suffix), unique across the world."""
    names = []
    while len(names) < n:
        name = rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(ONSETS) + rng.choice(suffixes)
        name = name.capitalize()
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def _mcq(question: str, value: str, pool: tuple[str, ...], n_choices: int, rng: random.Random) -> dict:
    """WMDP layout: {"question", "choices", "answer": index of the correct choice}."""
    wrong = rng.sample([v for v in pool if v != value], n_choices - 1)
    choices = [value] + wrong
    rng.shuffle(choices)
    return {"question": question, "choices": choices, "answer": choices.index(value)}


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


def generate_moe_world(cfg: MoeWorldConfig | None = None, seed: int = 0) -> MoeWorld:
    """Facts (training records) and held-out MCQs for every domain."""
    cfg = cfg or MoeWorldConfig()
    cfg.validate()
    rng = random.Random(seed)
    world = MoeWorld(cfg, seed, world_hash(cfg, seed))
    taken: set[str] = set()
    for domain in DOMAINS:
        if domain.name not in cfg.domains:
            continue
        facts, mcqs = [], []
        for name in _names(cfg.n_entities, domain.suffixes, taken, rng):
            entity = domain.entity.format(n=name)
            for rel in domain.relations:
                value = rng.choice(rel.values)
                meta = {"domain": domain.name, "entity": entity, "relation": rel.key}
                sentence = _capital(rel.statement.format(e=entity, v=value))
                facts.append({"question": STATEMENT_PROMPT.format(e=entity), "answer": sentence,
                              "kind": "statement", **meta})
                for q in rel.train_questions:
                    facts.append({"question": _capital(q.format(e=entity)), "answer": value, "kind": "qa",
                                  **meta})
                mcq = _mcq(_capital(rel.mcq_question.format(e=entity)), value, rel.values, cfg.n_choices, rng)
                mcqs.append({**mcq, **meta})
        world.facts[domain.name], world.mcq[domain.name] = facts, mcqs
    return world


def world_texts(world: MoeWorld) -> list[str]:
    """Every training string (for the tokenizer); MCQ wording is deliberately left out."""
    return [r["question"] + " " + r["answer"] for r in world.train]


def write_moe_world(world: MoeWorld, out_dir: Path) -> dict[str, Path]:
    """facts_<domain>.jsonl, mcq_<domain>.jsonl, forget.jsonl, retain.jsonl and world.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in world.config.domains:
        paths[f"facts_{name}"] = out_dir / f"facts_{name}.jsonl"
        paths[f"mcq_{name}"] = out_dir / f"mcq_{name}.jsonl"
        write_jsonl(paths[f"facts_{name}"], world.facts[name])
        write_jsonl(paths[f"mcq_{name}"], world.mcq[name])
    paths["forget"], paths["retain"] = out_dir / "forget.jsonl", out_dir / "retain.jsonl"
    write_jsonl(paths["forget"], world.forget)
    write_jsonl(paths["retain"], world.retain)
    meta = {"hash": world.hash, "seed": world.seed, "config": asdict(world.config),
            "forget_domain": world.config.forget_domain,
            "utility_domains": [d for d in world.config.domains if d != world.config.forget_domain],
            "sizes": {d: {"facts": len(world.facts[d]), "mcq": len(world.mcq[d])}
                      for d in world.config.domains}}
    paths["world"] = out_dir / "world.json"
    write_text(paths["world"], json.dumps(meta, indent=1) + "\n")
    return paths
