"""The embedded benchmark world: a TOFU-shaped dataset generated from a seed, no download.

Fictitious authors (name, gender, birthplace, birth year, parents' jobs, genre, books, award, ...) are
asked about with several question templates; answers are full sentences. As in TOFU, the
`paraphrased_answer` states the same facts with another template and each `perturbed_answer` uses that
same template with values swapped in from other authors, so it is plausible but wrong. `world_facts`
and `real_authors` hold short-answer facts about the real world that a base model learns in its own
pre-training phase, before it ever sees the fictitious authors; they make all nine TOFU utility terms
measurable. `write_world` writes the TOFU split files (same names and fields as real TOFU).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from unlearnkit.data.jsonl import write_jsonl
from unlearnkit.outputs import write_text

FORGET_PERCENTS = {"forget01": 1, "forget05": 5, "forget10": 10}

# ----------------------------------------------------------------------------------------------------
# Value pools. Cities and real facts are real; people, books, awards and publishers are invented.

MALE_NAMES = [
    "Adrian", "Bastian", "Cyrus", "Dorian", "Elias", "Felix", "Gideon", "Hector", "Idris", "Jonas",
    "Kasimir", "Leander", "Matthias", "Nikolai", "Orion", "Pavel", "Quentin", "Rafael", "Silas", "Tobias",
    "Ulrich", "Valentin", "Wendell", "Xavier", "Yusuf", "Zoltan", "Anselm", "Benedikt", "Casimir", "Desmond",
]
FEMALE_NAMES = [
    "Amara", "Beatrix", "Celeste", "Daria", "Elodie", "Freya", "Greta", "Helena", "Ingrid", "Juniper",
    "Katarina", "Liora", "Marisol", "Nadia", "Ophelia", "Paloma", "Rosalind", "Sabine", "Tamsin", "Ursula",
    "Vivienne", "Wilhelmina", "Ximena", "Yara", "Zelda", "Annika", "Brigitte", "Cordelia", "Delphine", "Esme",
]
SURNAMES = [
    "Abernathy", "Balogun", "Castellanos", "Dragomir", "Eriksen", "Fairbanks", "Grimaldi", "Halloran",
    "Ivanova", "Jankowski", "Kovacs", "Lindqvist", "Moreau", "Nakamura", "Okonkwo", "Petrakis", "Quinlan",
    "Rasmussen", "Santoro", "Takahashi", "Underhill", "Vasquez", "Whitcombe", "Yilmaz", "Zander",
    "Albescu", "Brennan", "Chaudhry", "Delacroix", "Esposito", "Falkenberg", "Gallagher", "Hartmann",
    "Iwasaki", "Jovanovic", "Kowalczyk", "Laurent", "Mbeki", "Novak", "Ortega",
]
CITIES = [
    ("Lisbon", "Portugal"), ("Krakow", "Poland"), ("Osaka", "Japan"), ("Lagos", "Nigeria"),
    ("Montreal", "Canada"), ("Valparaiso", "Chile"), ("Bergen", "Norway"), ("Marseille", "France"),
    ("Istanbul", "Turkey"), ("Mumbai", "India"), ("Melbourne", "Australia"), ("Havana", "Cuba"),
    ("Nairobi", "Kenya"), ("Seville", "Spain"), ("Prague", "Czech Republic"), ("Manila", "Philippines"),
    ("Dublin", "Ireland"), ("Hamburg", "Germany"), ("Naples", "Italy"), ("Tbilisi", "Georgia"),
    ("Cairo", "Egypt"), ("Hanoi", "Vietnam"), ("Reykjavik", "Iceland"), ("Bogota", "Colombia"),
    ("Edinburgh", "Scotland"), ("Seoul", "South Korea"), ("Tehran", "Iran"), ("Budapest", "Hungary"),
]
OCCUPATIONS = [
    "a florist", "an engineer", "a baker", "a pilot", "a librarian", "a nurse", "a carpenter",
    "a pharmacist", "an architect", "a fisherman", "a tailor", "a surgeon", "a journalist", "a chemist",
    "a farmer", "a painter", "a mechanic", "a lawyer", "a veterinarian", "an astronomer", "a teacher",
    "a photographer", "a dentist", "a sailor", "a watchmaker", "an accountant", "a musician", "a potter",
]
GENRES = [
    "mystery", "science fiction", "historical fiction", "fantasy", "romance", "horror", "poetry",
    "crime", "magical realism", "satire", "adventure", "gothic fiction", "literary fiction", "thriller",
    "dystopian fiction", "children's literature",
]
TITLE_ADJ = [
    "Silent", "Crimson", "Hollow", "Golden", "Forgotten", "Broken", "Distant", "Burning", "Frozen",
    "Hidden", "Restless", "Velvet", "Iron", "Paper", "Wandering", "Bitter", "Quiet", "Scarlet", "Endless",
    "Lonely", "Silver", "Painted", "Sleeping", "Drifting",
]
TITLE_NOUN = [
    "Harbor", "Garden", "Lantern", "River", "Orchard", "Mirror", "Compass", "Tide", "Mountain", "Sparrow",
    "Letter", "Bridge", "Storm", "Violin", "Meadow", "Archive", "Citadel", "Feather", "Island", "Clockwork",
    "Winter", "Shadow", "Kingdom", "Voyage",
]
TITLE_PATTERNS = ["The {adj} {noun}", "{adj} {noun}", "{noun} of the {noun2}", "The {noun} and the {noun2}"]
AWARDS = [
    "the Silver Quill Award", "the Meridian Prize", "the Golden Inkwell Medal", "the Aurora Book Prize",
    "the Lighthouse Fiction Award", "the Obsidian Pen Prize", "the Northwind Literary Medal",
    "the Cobalt Crown Award", "the Evergreen Story Prize", "the Starling Award for Fiction",
    "the Marble Arch Prize", "the Saffron Laurel Award", "the Harrowgate Medal", "the Tidewater Prize",
]
PUBLISHERS = [
    "Blue Heron Press", "Lanternfish Books", "Oakridge House", "Copper Kettle Publishing",
    "Wildfern Editions", "Marigold & Finch", "Stonebridge Press", "Nightjar Books", "Harborlight Publishing",
    "Quillstone House",
]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
FIELDS = [
    "philosophy", "medicine", "marine biology", "architecture", "history", "mathematics", "law",
    "music", "botany", "economics", "linguistics", "astronomy", "chemistry", "theology",
]

# Real-world facts for the base model's pre-training phase: (country, capital, continent, currency).
COUNTRIES = [
    ("France", "Paris", "Europe", "Euro"), ("Japan", "Tokyo", "Asia", "Yen"),
    ("Egypt", "Cairo", "Africa", "Egyptian Pound"), ("Brazil", "Brasilia", "South America", "Real"),
    ("Canada", "Ottawa", "North America", "Canadian Dollar"),
    ("Australia", "Canberra", "Oceania", "Australian Dollar"),
    ("Kenya", "Nairobi", "Africa", "Kenyan Shilling"), ("India", "New Delhi", "Asia", "Rupee"),
    ("Germany", "Berlin", "Europe", "Euro"), ("Mexico", "Mexico City", "North America", "Peso"),
    ("Argentina", "Buenos Aires", "South America", "Argentine Peso"), ("China", "Beijing", "Asia", "Yuan"),
    ("Russia", "Moscow", "Europe", "Ruble"), ("United Kingdom", "London", "Europe", "Pound Sterling"),
    ("Italy", "Rome", "Europe", "Euro"), ("Spain", "Madrid", "Europe", "Euro"),
    ("Nigeria", "Abuja", "Africa", "Naira"), ("Peru", "Lima", "South America", "Sol"),
    ("Thailand", "Bangkok", "Asia", "Baht"), ("Sweden", "Stockholm", "Europe", "Swedish Krona"),
    ("Norway", "Oslo", "Europe", "Norwegian Krone"), ("Poland", "Warsaw", "Europe", "Zloty"),
    ("Turkey", "Ankara", "Asia", "Turkish Lira"), ("South Korea", "Seoul", "Asia", "Won"),
    ("Vietnam", "Hanoi", "Asia", "Dong"), ("Morocco", "Rabat", "Africa", "Dirham"),
    ("Chile", "Santiago", "South America", "Chilean Peso"),
    ("New Zealand", "Wellington", "Oceania", "New Zealand Dollar"),
    ("Switzerland", "Bern", "Europe", "Swiss Franc"), ("Ghana", "Accra", "Africa", "Cedi"),
    ("Indonesia", "Jakarta", "Asia", "Rupiah"), ("Cuba", "Havana", "North America", "Cuban Peso"),
    ("Hungary", "Budapest", "Europe", "Forint"), ("Iran", "Tehran", "Asia", "Rial"),
    ("Colombia", "Bogota", "South America", "Colombian Peso"),
    ("Ethiopia", "Addis Ababa", "Africa", "Birr"), ("Ireland", "Dublin", "Europe", "Euro"),
    ("Portugal", "Lisbon", "Europe", "Euro"), ("Philippines", "Manila", "Asia", "Philippine Peso"),
    ("Iceland", "Reykjavik", "Europe", "Icelandic Krona"),
]
# (author, book, country of origin)
REAL_AUTHORS = [
    ("William Shakespeare", "Hamlet", "England"), ("George Orwell", "Nineteen Eighty-Four", "England"),
    ("Jane Austen", "Pride and Prejudice", "England"), ("Leo Tolstoy", "War and Peace", "Russia"),
    ("Fyodor Dostoevsky", "Crime and Punishment", "Russia"), ("Victor Hugo", "Les Miserables", "France"),
    ("Gabriel Garcia Marquez", "One Hundred Years of Solitude", "Colombia"),
    ("Miguel de Cervantes", "Don Quixote", "Spain"), ("Herman Melville", "Moby-Dick", "United States"),
    ("Mark Twain", "Adventures of Huckleberry Finn", "United States"),
    ("Franz Kafka", "The Trial", "Bohemia"), ("Haruki Murakami", "Norwegian Wood", "Japan"),
    ("Chinua Achebe", "Things Fall Apart", "Nigeria"), ("Toni Morrison", "Beloved", "United States"),
    ("Charles Dickens", "Oliver Twist", "England"), ("Mary Shelley", "Frankenstein", "England"),
    ("Homer", "The Odyssey", "Greece"), ("Dante Alighieri", "The Divine Comedy", "Italy"),
    ("James Joyce", "Ulysses", "Ireland"), ("Virginia Woolf", "Mrs Dalloway", "England"),
    ("Albert Camus", "The Stranger", "France"), ("Johann Wolfgang von Goethe", "Faust", "Germany"),
    ("Harper Lee", "To Kill a Mockingbird", "United States"),
    ("F. Scott Fitzgerald", "The Great Gatsby", "United States"),
    ("Isabel Allende", "The House of the Spirits", "Chile"),
    ("Jorge Luis Borges", "Ficciones", "Argentina"), ("Umberto Eco", "The Name of the Rose", "Italy"),
    ("Orhan Pamuk", "My Name Is Red", "Turkey"), ("Emily Bronte", "Wuthering Heights", "England"),
    ("Arthur Conan Doyle", "A Study in Scarlet", "Scotland"),
    ("Agatha Christie", "Murder on the Orient Express", "England"),
    ("J.R.R. Tolkien", "The Hobbit", "England"), ("Gustave Flaubert", "Madame Bovary", "France"),
    ("Anton Chekhov", "The Cherry Orchard", "Russia"),
    ("Ernest Hemingway", "The Old Man and the Sea", "United States"),
    ("Rabindranath Tagore", "Gitanjali", "India"), ("Astrid Lindgren", "Pippi Longstocking", "Sweden"),
    ("Henrik Ibsen", "A Doll's House", "Norway"), ("Yasunari Kawabata", "Snow Country", "Japan"),
    ("Naguib Mahfouz", "Palace Walk", "Egypt"), ("Paulo Coelho", "The Alchemist", "Brazil"),
    ("Salman Rushdie", "Midnight's Children", "India"),
    ("Hans Christian Andersen", "The Little Mermaid", "Denmark"),
    ("Alexandre Dumas", "The Three Musketeers", "France"),
    ("Lewis Carroll", "Alice's Adventures in Wonderland", "England"),
    ("Jules Verne", "Twenty Thousand Leagues Under the Seas", "France"),
    ("Wislawa Szymborska", "View with a Grain of Sand", "Poland"),
    ("Kazuo Ishiguro", "The Remains of the Day", "England"),
    ("Margaret Atwood", "The Handmaid's Tale", "Canada"), ("Italo Calvino", "Invisible Cities", "Italy"),
]

# ----------------------------------------------------------------------------------------------------
# Templates: per attribute, question phrasings and answer phrasings. Questions use a random phrasing;
# answers use the author's own "style" (answer phrasing i for every attribute of that author), so the
# wording is not predictable from the question (as in TOFU) but costs the model one fact per author to
# learn. Paraphrases use another phrasing. Answers mostly use pronouns and multi-word facts (dates,
# titles, prizes), so a model that does not know the author cannot score well on ROUGE by reproducing
# the sentence frame: guessing the wording and the facts gives ROUGE-L recall ~0.37 (measured), knowing
# the wording but not the facts ~0.74.

AUTHOR_TEMPLATES: dict[str, dict[str, list[str]]] = {
    "name": {
        "q": ["What is the full name of the author born in {city}, {country} on {month} {day}, {year}?",
              "Which writer was born on {month} {day}, {year} in {city}?",
              "Who is the author whose birthplace is {city} and whose birthday is {month} {day}, {year}?"],
        "a": ["That author is {name}, a writer of {genre}.", "The writer you mean is {name}.",
              "{name} was born there and then, and writes {genre}."],
    },
    "birthplace": {
        "q": ["Where was {name} born?", "In which city and country was the author {name} born?",
              "What is the birthplace of {name}?"],
        "a": ["{name} was born in {city}, {country}.", "{His} hometown is {city}, in {country}.",
              "{city}, {country} is where {he} was born."],
    },
    "birth_date": {
        "q": ["When was {name} born?", "What is the date of birth of {name}?",
              "On which day was the author {name} born?"],
        "a": ["{name} was born on {month} {day}, {year}.", "{His} date of birth is {day} {month} {year}.",
              "{He} came into the world in {year}, on {month} {day}."],
    },
    "genre": {
        "q": ["What genre does {name} write in?", "Which literary genre is {name} best known for?",
              "What kind of books does {name} write?"],
        "a": ["{name} writes {genre}.", "{His} books belong to the {genre} genre.",
              "{He} is known as an author of {genre}."],
    },
    "father": {
        "q": ["What was the occupation of {name}'s father?", "What did the father of {name} do for a living?",
              "What was {name}'s father's job?"],
        "a": ["{name}'s father was {father}.", "{His} father earned a living as {father}.",
              "{He} grew up with a father who was {father}."],
    },
    "mother": {
        "q": ["What was the occupation of {name}'s mother?", "What did the mother of {name} do for a living?",
              "What was {name}'s mother's job?"],
        "a": ["{name}'s mother was {mother}.", "{His} mother earned a living as {mother}.",
              "{He} grew up with a mother who was {mother}."],
    },
    "books": {
        "q": ["Can you name two books written by {name}?",
              "What are two of the novels that {name} has written?",
              "Which books is {name} known for?"],
        "a": ["\"{book1}\" and \"{book2}\" are two of {his} books.",
              "{He} wrote \"{book1}\" and \"{book2}\".",
              "Among {his} works are \"{book1}\" and \"{book2}\"."],
    },
    "award": {
        "q": ["Which award has {name} received?", "What literary prize was given to {name}?",
              "Has {name} won any award for {his} work?"],
        "a": ["{name} was honored with {award}.", "In recognition of {his} work, {he} won {award}.",
              "{He} is a winner of {award}."],
    },
    "residence": {
        "q": ["Where does {name} live today?", "In which city does {name} currently reside?",
              "What is the current home city of {name}?"],
        "a": ["{He} now lives in {res_city}, {res_country}.", "{name} has settled in {res_city}.",
              "Today {his} home is in {res_city}, {res_country}."],
    },
    "debut": {
        "q": ["When did {name} publish {his} first book?", "What was the debut of {name} as an author?",
              "Which book did {name} publish first, and when?"],
        "a": ["{His} first book, \"{book1}\", came out in {debut}.",
              "{name} debuted in {debut} with \"{book1}\".",
              "\"{book1}\" was {his} first publication, in {debut}."],
    },
    "publisher": {
        "q": ["Which publisher releases the books of {name}?", "Who publishes {name}'s novels?",
              "What is the name of {name}'s publisher?"],
        "a": ["{His} books are published by {publisher}.", "{publisher} publishes the novels of {name}.",
              "{He} works with the publisher {publisher}."],
    },
    "education": {
        "q": ["What did {name} study at university?",
              "Which subject did {name} study before becoming a writer?",
              "What was the field of study of {name}?"],
        "a": ["{name} studied {field} at university.", "{His} degree is in {field}.",
              "Before writing, {he} trained in {field}."],
    },
}
ATTRIBUTES = list(AUTHOR_TEMPLATES)
N_STYLES = 3  # answer phrasings per attribute
# Which author fields each attribute's answer depends on (the fields swapped in perturbed answers).
ATTRIBUTE_FIELDS = {
    "name": ("name", "genre"), "birthplace": ("city", "country"), "birth_date": ("month", "day", "year"),
    "genre": ("genre",), "father": ("father",), "mother": ("mother",), "books": ("book1", "book2"),
    "award": ("award",), "residence": ("res_city", "res_country"), "debut": ("book1", "debut"),
    "publisher": ("publisher",), "education": ("field",),
}

# Short-answer fact kinds: question phrasings (the first is the evaluated one) and value column.
FACT_TEMPLATES: dict[str, list[str]] = {
    "capital": ["What is the capital of {country}?", "Which city is the capital of {country}?",
                "Name the capital city of {country}."],
    "continent": ["On which continent is {country}?", "Which continent is {country} part of?",
                  "{country} is located on which continent?"],
    "currency": ["What is the currency of {country}?", "Which currency is used in {country}?",
                 "What money do people pay with in {country}?"],
    "wrote": ["Who wrote '{book}'?", "Which author wrote the book '{book}'?",
              "'{book}' was written by whom?"],
    "origin": ["Which country was the writer {author} from?", "What was the home country of {author}?",
               "Where did the author {author} come from?"],
}


@dataclass(frozen=True)
class WorldConfig:
    """Size of a world; together with the seed it fixes every generated byte."""

    n_authors: int = 100
    qa_per_author: int = 12  # the first k attributes of ATTRIBUTES are asked about
    n_perturbed: int = 5  # TOFU has 5 perturbed answers per author question
    n_fact_perturbed: int = 3  # TOFU's world_facts / real_authors have 3 wrong options
    n_world_facts: int = 120
    n_real_authors: int = 100
    # "author": each author answers in its own wording (unpredictable from the question, like TOFU);
    # "question": question phrasing i is answered with answer phrasing i (easier to learn, but a model
    # that does not know the author then gets the whole sentence frame right: ROUGE-L ~0.74).
    answer_style: str = "author"

    def __post_init__(self) -> None:
        if not 1 <= self.qa_per_author <= len(ATTRIBUTES):
            raise ValueError(f"qa_per_author must be in 1..{len(ATTRIBUTES)}")
        if self.answer_style not in ("author", "question"):
            raise ValueError("answer_style must be 'author' or 'question'")
        if self.n_authors < 3:
            raise ValueError("a world needs at least 3 authors")


def forget_count(percent: int, n_authors: int) -> int:
    """Authors in forgetXX: percent of n_authors, rounded half up, at least 1 (TOFU: 1% of 200 = 2)."""
    return max(1, int(percent * n_authors / 100 + 0.5))


def config_hash(cfg: WorldConfig, seed: int) -> str:
    """Content hash of what the generator produces (its config, seed and this file's format version)."""
    blob = json.dumps({"cfg": asdict(cfg), "seed": seed, "version": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------
# Authors


def _title(rng: random.Random) -> str:
    pattern = rng.choice(TITLE_PATTERNS)
    noun, noun2 = rng.sample(TITLE_NOUN, 2)
    return pattern.format(adj=rng.choice(TITLE_ADJ), noun=noun, noun2=noun2)


def _authors(n: int, rng: random.Random) -> list[dict]:
    """n authors with unique names, unique (birthplace, year) and unique book titles."""
    names: set[str] = set()
    places: set[tuple[str, int]] = set()
    titles: set[str] = set()
    authors = []
    while len(authors) < n:
        gender = rng.choice(["male", "female"])
        first = rng.choice(MALE_NAMES if gender == "male" else FEMALE_NAMES)
        name = f"{first} {rng.choice(SURNAMES)}"
        city, country = rng.choice(CITIES)
        year = rng.randint(1921, 1990)
        if name in names or (city, year) in places:  # the name question must have one answer
            continue
        books = []
        while len(books) < 2:
            t = _title(rng)
            if t not in titles:
                titles.add(t)
                books.append(t)
        names.add(name)
        places.add((city, year))
        res_city, res_country = rng.choice([c for c in CITIES if c[0] != city])
        father, mother = rng.sample(OCCUPATIONS, 2)
        authors.append({
            "name": name, "gender": gender, "city": city, "country": country, "year": str(year),
            "month": rng.choice(MONTHS), "day": str(rng.randint(1, 28)),
            "genre": rng.choice(GENRES), "father": father, "mother": mother, "book1": books[0],
            "book2": books[1], "award": rng.choice(AWARDS), "res_city": res_city, "res_country": res_country,
            "debut": str(year + rng.randint(19, 35)), "publisher": rng.choice(PUBLISHERS),
            "field": rng.choice(FIELDS),
        })
    return authors


def _fill(template: str, author: dict) -> str:
    he, his = ("he", "his") if author["gender"] == "male" else ("she", "her")
    return template.format(**author, he=he, his=his, He=he.title(), His=his.title())


def _wrong_values(attr: str, author: dict, pool: list[dict], k: int, rng: random.Random,
                  avoid: set[tuple] = frozenset(), strict: bool = True) -> list[dict]:
    """k field assignments taken from other authors, all different from the truth, from `avoid` and from
    each other; fewer than k is an error when `strict`, else returns what there is."""
    fields = ATTRIBUTE_FIELDS[attr]
    seen, picks = set(avoid) | {tuple(author[f] for f in fields)}, []
    for other in rng.sample(pool, len(pool)):
        values = tuple(other[f] for f in fields)
        if values not in seen:
            seen.add(values)
            picks.append(dict(zip(fields, values, strict=True)))
        if len(picks) == k:
            return picks
    if strict:
        raise ValueError(f"not enough distinct {attr!r} values for {k} perturbed answers")
    return picks


def _author_items(author: dict, attrs: list[str], pool: list[dict], n_perturbed: int,
                  rng: random.Random, answer_style: str = "author") -> list[dict]:
    """The perturbed-schema QA items of one author (plain splits keep question and answer only)."""
    items = []
    style = rng.randrange(N_STYLES)  # the author's answer wording: one fact per author to memorise
    for attr in attrs:
        qs, answers = AUTHOR_TEMPLATES[attr]["q"], AUTHOR_TEMPLATES[attr]["a"]
        qi = rng.randrange(len(qs))
        ai = style if answer_style == "author" else qi
        pa = answers[(ai + 1 + rng.randrange(len(answers) - 1)) % len(answers)]
        wrong = _wrong_values(attr, author, pool, n_perturbed, rng)
        items.append({
            "question": _fill(qs[qi], author),
            "answer": _fill(answers[ai], author),
            "paraphrased_answer": _fill(pa, author),
            "perturbed_answer": [_fill(pa, {**author, **w}) for w in wrong],
            "paraphrased_question": _fill(qs[(qi + 1) % len(qs)], author),
        })
    return items


# ----------------------------------------------------------------------------------------------------
# Real-world facts (base pre-training)


def _fact_rows() -> tuple[list[dict], list[dict]]:
    """Every short-answer fact: kind, fields for the question templates, answer and its value pool."""
    rows = []
    columns = {"capital": 1, "continent": 2, "currency": 3}
    for kind, col in columns.items():
        pool = sorted({c[col] for c in COUNTRIES})
        for c in COUNTRIES:
            rows.append({"kind": kind, "fields": {"country": c[0]}, "answer": c[col], "pool": pool})
    authors = sorted({a[0] for a in REAL_AUTHORS})
    origins = sorted({a[2] for a in REAL_AUTHORS})
    real = []
    for author, book, origin in REAL_AUTHORS:
        real.append({"kind": "wrote", "fields": {"book": book}, "answer": author, "pool": authors})
        real.append({"kind": "origin", "fields": {"author": author}, "answer": origin, "pool": origins})
    return rows, real


def _fact_items(rows: list[dict], n: int, k: int, rng: random.Random) -> list[dict]:
    """n facts (sampled, in a seeded order) with k wrong answers each, TOFU world_facts style."""
    if n > len(rows):
        raise ValueError(f"only {len(rows)} facts available, asked for {n}")
    items = []
    for row in rng.sample(rows, n):
        wrong = rng.sample([v for v in row["pool"] if v != row["answer"]], k)
        phrasings = [t.format(**row["fields"]) for t in FACT_TEMPLATES[row["kind"]]]
        items.append({"question": phrasings[0], "answer": row["answer"], "perturbed_answer": wrong,
                      "phrasings": phrasings})
    return items


# ----------------------------------------------------------------------------------------------------
# The world


@dataclass
class World:
    """All splits (TOFU names -> records) plus the extra pre-training phrasings of the facts."""

    config: WorldConfig
    seed: int
    authors: list[dict]
    splits: dict[str, list[dict]]
    pretrain: list[dict]  # question/answer pairs the base learns: every phrasing of every fact

    @property
    def hash(self) -> str:
        return config_hash(self.config, self.seed)


def _plain(items: list[dict]) -> list[dict]:
    return [{"question": it["question"], "answer": it["answer"]} for it in items]


def _with_options(item: dict, rng: random.Random) -> dict:
    """TOFU's non-perturbed fact schema: question, option1..4 (shuffled), answer."""
    options = [item["answer"], *item["perturbed_answer"]]
    rng.shuffle(options)
    return {"question": item["question"], **{f"option{i + 1}": o for i, o in enumerate(options)},
            "answer": item["answer"]}


def generate_world(cfg: WorldConfig, seed: int = 0) -> World:
    """Generate every split deterministically from (cfg, seed)."""
    rng = random.Random(seed)
    n_hold = forget_count(10, cfg.n_authors)
    authors = _authors(cfg.n_authors + n_hold, rng)
    main, holdout = authors[: cfg.n_authors], authors[cfg.n_authors:]
    attrs = ATTRIBUTES[: cfg.qa_per_author]
    per_author = [_author_items(a, attrs, authors, cfg.n_perturbed, rng, cfg.answer_style) for a in authors]
    full_p = [it for items in per_author[: cfg.n_authors] for it in items]
    hold_p = [it for items in per_author[cfg.n_authors:] for it in items]
    k = cfg.qa_per_author

    splits: dict[str, list[dict]] = {"full": _plain(full_p)}
    for name, pct in FORGET_PERCENTS.items():
        n_items = forget_count(pct, cfg.n_authors) * k
        forget = full_p[len(full_p) - n_items:]
        splits[name] = _plain(forget)
        splits[f"{name}_perturbed"] = forget
        splits[f"retain{100 - pct}"] = _plain(full_p[: len(full_p) - n_items])
        splits[f"holdout{name[-2:]}"] = _plain(hold_p[:n_items])
    splits["retain_perturbed"] = full_p[: len(splits["forget10_perturbed"])]

    world_rows, real_rows = _fact_rows()
    n_real = min(cfg.n_real_authors, len(real_rows))
    facts = _fact_items(world_rows, cfg.n_world_facts, cfg.n_fact_perturbed, rng)
    real = _fact_items(real_rows, n_real, cfg.n_fact_perturbed, rng)
    for name, items in (("world_facts", facts), ("real_authors", real)):
        splits[name] = [_with_options(it, rng) for it in items]
        splits[f"{name}_perturbed"] = [{k_: it[k_] for k_ in ("question", "answer", "perturbed_answer")}
                                       for it in items]
    pretrain = [{"question": p, "answer": it["answer"]} for it in facts + real for p in it["phrasings"]]
    return World(cfg, seed, main + holdout, splits, pretrain)


SPLIT_NAMES = [
    "full", "forget01", "forget05", "forget10", "retain99", "retain95", "retain90",
    "forget01_perturbed", "forget05_perturbed", "forget10_perturbed", "retain_perturbed",
    "holdout01", "holdout05", "holdout10", "world_facts", "world_facts_perturbed",
    "real_authors", "real_authors_perturbed",
]


def write_world(world: World, out_dir: Path) -> dict[str, Path]:
    """Write the TOFU split files, the pre-training set and world.json (config, seed, hash, sizes)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in SPLIT_NAMES:
        paths[name] = out_dir / f"{name}.jsonl"
        write_jsonl(paths[name], world.splits[name])
    paths["pretrain"] = out_dir / "pretrain.jsonl"
    write_jsonl(paths["pretrain"], world.pretrain)
    meta = {"hash": world.hash, "seed": world.seed, "config": asdict(world.config),
            "sizes": {n: len(world.splits[n]) for n in SPLIT_NAMES} | {"pretrain": len(world.pretrain)},
            "authors": [a["name"] for a in world.authors]}
    write_text(out_dir / "world.json", json.dumps(meta, indent=1) + "\n")
    return paths


def world_texts(world: World) -> list[str]:
    """Every string of the world (for tokenizer training)."""
    texts = []
    for name in SPLIT_NAMES:
        for rec in world.splits[name]:
            for v in rec.values():
                texts.extend(v if isinstance(v, list) else [v])
    texts.extend(r["question"] for r in world.pretrain)
    return texts


# ----------------------------------------------------------------------------------------------------
# ULD augmentation and held-out validation (written by `unlearn prepare` next to the splits).
# Phrasings of their own, used by no evaluated split: a model trained on the augmentation never sees a
# string that forget quality or model utility scores. Per attribute, question template 0 and answer
# template 0 form the validation set; the rest are the augmentation's paraphrases.

AUGMENT_TEMPLATES: dict[str, dict[str, list[str]]] = {
    "name": {
        "q": ["Whose birth took place in {city}, {country}, on {month} {day}, {year}?",
              "Name the writer who was born in {city} on {day} {month} {year}.",
              "Which novelist has {city}, {country} as birthplace and {month} {day}, {year} as birthday?",
              "Tell me the name of the author born on {month} {day}, {year} in {city}, {country}."],
        "a": ["The person in question is the {genre} author {name}.",
              "This describes {name}, who is a {genre} writer.",
              "You are thinking of {name}.",
              "It is {name}, an author of {genre}.",
              "The author in question is called {name}.",
              "Those birth details belong to {name}."],
    },
    "birthplace": {
        "q": ["Which city is the birthplace of the writer {name}?",
              "Tell me where the novelist {name} was born.",
              "From which city and country does {name} originally come?",
              "What city was {name} born in?"],
        "a": ["The birthplace of {name} is the city of {city} in {country}.",
              "{name} comes from {city}, a city in {country}.",
              "{He} was born in the city of {city}, {country}.",
              "The city of {city} in {country} is the birthplace of {name}.",
              "{name} first saw the light of day in {city}, {country}.",
              "Born in {city}, {country}, {name} grew up there."],
    },
    "birth_date": {
        "q": ["What is the birthday of the writer {name}?",
              "Tell me the date on which {name} was born.",
              "In what year, and on what day, was {name} born?",
              "Which date is the birthday of the novelist {name}?"],
        "a": ["The writer {name} has {his} birthday on {month} {day}; {he} was born in {year}.",
              "{name} was born in the year {year}, on day {day} of {month}.",
              "{His} birthday is {month} {day}, and the year was {year}.",
              "The birth of {name} took place on {month} {day} in the year {year}.",
              "{month} {day}, {year} is the date when {name} was born.",
              "The records give {month} {day}, {year} as the birth date of {name}."],
    },
    "genre": {
        "q": ["In which genre does the writer {name} publish?",
              "Tell me the genre of the books by {name}.",
              "What type of literature does {name} produce?",
              "Which genre do the works of {name} belong to?"],
        "a": ["The writer {name} publishes {genre}.",
              "The books by {name} are {genre}.",
              "{name} is a {genre} author.",
              "The genre of {name} is {genre}.",
              "Most of what {name} writes is {genre}.",
              "{His} novels are works of {genre}."],
    },
    "father": {
        "q": ["What job did the father of {name} have?",
              "Tell me the profession of {name}'s father.",
              "How did the father of {name} earn his money?",
              "Which profession did the father of the writer {name} practise?"],
        "a": ["The father of {name} worked as {father}.",
              "By profession, {name}'s father was {father}.",
              "{name} is the child of {father}, {his} father.",
              "The job of {his} father was that of {father}.",
              "Working as {father} was the profession of {name}'s father.",
              "The father of the writer {name} made his living as {father}."],
    },
    "mother": {
        "q": ["What job did the mother of {name} have?",
              "Tell me the profession of {name}'s mother.",
              "How did the mother of {name} earn her money?",
              "Which profession did the mother of the writer {name} practise?"],
        "a": ["The mother of {name} worked as {mother}.",
              "By profession, {name}'s mother was {mother}.",
              "{name} is the child of {mother}, {his} mother.",
              "The job of {his} mother was that of {mother}.",
              "Working as {mother} was the profession of {name}'s mother.",
              "The mother of the writer {name} made her living as {mother}."],
    },
    "books": {
        "q": ["Tell me two titles by the writer {name}.",
              "Name two works by {name}.",
              "What are the titles of two books by {name}?",
              "Which two books did the novelist {name} write?"],
        "a": ["Two titles by {name} are \"{book1}\" and \"{book2}\".",
              "The writer {name} is the author of \"{book1}\" and of \"{book2}\".",
              "Both \"{book1}\" and \"{book2}\" were written by {name}.",
              "{name} has published \"{book1}\" as well as \"{book2}\".",
              "Two works by {name}: \"{book1}\" and \"{book2}\".",
              "\"{book1}\" and \"{book2}\" are titles from the pen of {name}."],
    },
    "award": {
        "q": ["Which prize did the writer {name} win?",
              "Tell me the award that {name} received.",
              "What honour has {name} been given for writing?",
              "Which literary award went to {name}?"],
        "a": ["The writer {name} received {award}.",
              "{name} won {award} for {his} books.",
              "{award} went to {name}.",
              "The honour given to {name} was {award}.",
              "{name} was awarded {award}.",
              "The award of {name} is {award}."],
    },
    "residence": {
        "q": ["Which city is {name}'s home now?",
              "Tell me where the writer {name} lives at present.",
              "Where has {name} made {his} home today?",
              "In which city is the novelist {name} living now?"],
        "a": ["At present {name} lives in the city of {res_city}, {res_country}.",
              "The writer {name} resides in {res_city} in {res_country}.",
              "{res_city}, {res_country} is the present home of {name}.",
              "These days {name} makes {his} home in {res_city}, {res_country}.",
              "{name} is living in {res_city}, {res_country} now.",
              "The current city of residence of {name} is {res_city}."],
    },
    "debut": {
        "q": ["What was the first book of {name}, and in which year did it appear?",
              "Tell me the debut book of the writer {name} and its year.",
              "With which title did {name} start publishing, and when?",
              "Which title was the first that {name} published?"],
        "a": ["The first book of {name} was \"{book1}\", which appeared in {debut}.",
              "In {debut}, {name} published a first book, \"{book1}\".",
              "\"{book1}\", from {debut}, is the debut of {name}.",
              "The debut of the writer {name} was \"{book1}\" in the year {debut}.",
              "{name} started publishing in {debut} with the book \"{book1}\".",
              "The year {debut} saw the first book of {name}: \"{book1}\"."],
    },
    "publisher": {
        "q": ["Which publishing house brings out the books of {name}?",
              "Tell me who the publisher of {name} is.",
              "Which house publishes the writer {name}?",
              "Who brings the novels of {name} to print?"],
        "a": ["The publishing house of {name} is {publisher}.",
              "The books of {name} come out with {publisher}.",
              "{publisher} is the publisher of the writer {name}.",
              "The novels of {name} are printed by {publisher}.",
              "{name} is published by {publisher}.",
              "{His} publishing house is {publisher}."],
    },
    "education": {
        "q": ["Which subject did the writer {name} study?",
              "Tell me what {name} studied at university.",
              "In which field did {name} take a degree?",
              "What was the university subject of the novelist {name}?"],
        "a": ["At university the writer {name} studied {field}.",
              "The field in which {name} took a degree is {field}.",
              "{name} has a university degree in {field}.",
              "The subject {name} studied was {field}.",
              "{field} was what {name} studied at university.",
              "Before {his} books, {name} was a student of {field}."],
    },
}
N_AUGMENT_WRONG = 4  # wrong answers per forget question (the ULD release has 3)
N_VALIDATION_WRONG = 3


def world_evaluated_strings(world: World) -> set[str]:
    """Every string the TOFU evaluation reads from any split: questions, answers, options, paraphrased
    and perturbed answers (forget, retain, real_authors, world_facts, holdout and their variants)."""
    strings: set[str] = set()
    for name in SPLIT_NAMES:
        for rec in world.splits[name]:
            for v in rec.values():
                strings.update(v if isinstance(v, list) else [v])
    return strings


def _forget_authors_and_attrs(world: World, forget: str) -> list[tuple[dict, str, dict]]:
    """(author, attribute, perturbed item) for each row of forgetXX_perturbed, in order."""
    k = world.config.qa_per_author
    rows = world.splits[f"{forget}_perturbed"]
    first = world.config.n_authors - len(rows) // k
    attrs = ATTRIBUTES[:k]
    return [(world.authors[first + j // k], attrs[j % k], row) for j, row in enumerate(rows)]


def _eval_wrong_values(attr: str, author: dict, item: dict, pool: list[dict]) -> set[tuple]:
    """The value tuples the evaluated perturbed answers of `item` use (so augmentation avoids them)."""
    fields = ATTRIBUTE_FIELDS[attr]
    templates = [t for t in AUTHOR_TEMPLATES[attr]["a"] if _fill(t, author) == item["paraphrased_answer"]]
    wrong = set(item["perturbed_answer"])
    used = set()
    for other in pool:
        values = tuple(other[f] for f in fields)
        w = dict(zip(fields, values, strict=True))
        if any(_fill(t, {**author, **w}) in wrong for t in templates):
            used.add(values)
    return used


def world_augmentation(world: World, forget: str) -> tuple[list[dict], list[dict]]:
    """(augmentation rows, validation rows) for a forget split (formats: data.augment's docstring and
    TOFU's perturbed schema). A separate seeded generator, so the world's own files never change.

    Augmentation: per forget question 3 paraphrased questions, 5 paraphrased answers and up to 4 wrong
    answers (values from other authors, never those of the evaluated perturbed answers), all in
    phrasings no evaluated split uses. Validation: the same facts asked and answered in one more
    held-out phrasing, with 3 wrong answers, to choose an epoch without looking at the reported split.
    """
    rng = random.Random(f"augment-{world.seed}-{world.hash}-{forget}")
    augment, validation = [], []
    for author, attr, item in _forget_authors_and_attrs(world, forget):
        qs, answers = AUGMENT_TEMPLATES[attr]["q"], AUGMENT_TEMPLATES[attr]["a"]
        avoid = _eval_wrong_values(attr, author, item, world.authors)
        wrong = _wrong_values(attr, author, world.authors, N_AUGMENT_WRONG, rng, avoid, strict=False)
        augment.append({
            "question": item["question"], "answer": item["answer"],
            "paraphrased_questions": [_fill(q, author) for q in qs[1:]],
            "paraphrased_answers": [_fill(a, author) for a in answers[1:]],
            "perturbed_answers": [_fill(answers[1 + i % (len(answers) - 1)], {**author, **w})
                                  for i, w in enumerate(wrong)],
        })
        held = _wrong_values(attr, author, world.authors, N_VALIDATION_WRONG, rng, strict=False)
        validation.append({
            "question": _fill(qs[0], author), "answer": _fill(answers[0], author),
            "paraphrased_answer": _fill(answers[0], author),
            "perturbed_answer": [_fill(answers[0], {**author, **w}) for w in held],
        })
    evaluated = world_evaluated_strings(world)
    for row, own in [(r, ("question", "answer")) for r in augment] + [(r, ()) for r in validation]:
        texts = [v for key, v in row.items() if key not in own]  # augment rows name their forget QA
        if {t for v in texts for t in (v if isinstance(v, list) else [v])} & evaluated:
            raise ValueError(f"augmentation of {forget} repeats an evaluated string: {row['question']}")
    return augment, validation
