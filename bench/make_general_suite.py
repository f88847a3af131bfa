"""Writes the built-in general suite's multiple-choice items (nofrog_core/data_files/suites/general/).

Every item is written or generated for the nofrog project (same licence as the project):
hand-written facts and word lists below, expanded by templates with a fixed seed, so the
files are reproducible: `python bench/make_general_suite.py` rewrites them identically.

Tasks (each a lm-eval multiple_choice YAML beside its JSONL):
- world_knowledge: capitals (both ways), chemical symbols (both ways), languages, currencies,
  animal classes, science and everyday facts.
- arithmetic: two-digit sums and differences, small products; wrong choices off by 1, 2 or 10.
- language: opposites (both ways), comparatives, irregular plurals and past tenses, the order of
  days and months.
- everyday_reasoning: short generated stories with a question about them (where someone went,
  what someone bought, who came first) and common-sense questions.

Only item families the base model (Gemma 3 270M) answers above chance are kept: a family at
chance adds noise to the forgetting figure and no signal.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "nofrog_core" / "data_files" / "suites" / "general"

CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Germany": "Berlin", "Spain": "Madrid",
    "the United Kingdom": "London", "Russia": "Moscow", "China": "Beijing", "Egypt": "Cairo", "Canada": "Ottawa",
    "Australia": "Canberra", "India": "New Delhi", "Greece": "Athens", "Portugal": "Lisbon",
    "the United States": "Washington", "Ireland": "Dublin", "the Netherlands": "Amsterdam", "Belgium": "Brussels",
    "Austria": "Vienna", "Poland": "Warsaw", "Hungary": "Budapest", "Sweden": "Stockholm", "Norway": "Oslo",
    "Denmark": "Copenhagen", "Finland": "Helsinki", "Turkey": "Ankara", "Kenya": "Nairobi", "South Korea": "Seoul",
    "Thailand": "Bangkok", "Vietnam": "Hanoi", "Indonesia": "Jakarta", "the Philippines": "Manila",
    "New Zealand": "Wellington", "Mexico": "Mexico City", "Argentina": "Buenos Aires", "Peru": "Lima",
    "Chile": "Santiago", "Colombia": "Bogota", "Cuba": "Havana", "Iran": "Tehran", "Iraq": "Baghdad",
    "Saudi Arabia": "Riyadh", "Pakistan": "Islamabad", "Ethiopia": "Addis Ababa", "Ghana": "Accra",
    "Iceland": "Reykjavik", "Romania": "Bucharest", "Czechia": "Prague", "Ukraine": "Kyiv", "Morocco": "Rabat",
    # Added in suite version 3, so that the test part alone (70% of the items) is as large as the whole
    # version-2 suite: the gate's interval stays as narrow as before the split.
    "Switzerland": "Bern", "Brazil": "Brasilia", "Venezuela": "Caracas", "Ecuador": "Quito",
    "Uruguay": "Montevideo", "Paraguay": "Asuncion", "Nigeria": "Abuja", "Algeria": "Algiers", "Tunisia": "Tunis",
    "Libya": "Tripoli", "Sudan": "Khartoum", "Senegal": "Dakar", "Uganda": "Kampala", "Zimbabwe": "Harare",
    "Angola": "Luanda", "Syria": "Damascus", "Lebanon": "Beirut", "Jordan": "Amman", "Afghanistan": "Kabul",
    "Nepal": "Kathmandu", "Bangladesh": "Dhaka", "Malaysia": "Kuala Lumpur", "Mongolia": "Ulaanbaatar",
    "North Korea": "Pyongyang", "Cambodia": "Phnom Penh", "Laos": "Vientiane", "Serbia": "Belgrade",
    "Croatia": "Zagreb", "Bulgaria": "Sofia", "Slovakia": "Bratislava", "Slovenia": "Ljubljana", "Estonia": "Tallinn",
    "Latvia": "Riga", "Lithuania": "Vilnius", "Belarus": "Minsk", "Albania": "Tirana", "Jamaica": "Kingston",
    "Costa Rica": "San Jose", "Qatar": "Doha", "Oman": "Muscat", "Georgia": "Tbilisi", "Armenia": "Yerevan",
    "Azerbaijan": "Baku", "Uzbekistan": "Tashkent",
}
SYMBOLS = {
    "hydrogen": "H", "helium": "He", "carbon": "C", "nitrogen": "N", "oxygen": "O", "sodium": "Na", "iron": "Fe",
    "gold": "Au", "silver": "Ag", "copper": "Cu", "lead": "Pb", "potassium": "K", "calcium": "Ca",
    "chlorine": "Cl", "sulfur": "S", "zinc": "Zn", "tin": "Sn", "mercury": "Hg", "neon": "Ne", "magnesium": "Mg",
    "aluminium": "Al", "silicon": "Si", "uranium": "U", "nickel": "Ni",
    "fluorine": "F", "phosphorus": "P", "argon": "Ar", "lithium": "Li", "cobalt": "Co", "platinum": "Pt",
    "chromium": "Cr", "manganese": "Mn", "iodine": "I", "bromine": "Br", "titanium": "Ti", "tungsten": "W",
    "boron": "B", "beryllium": "Be", "barium": "Ba",
}
LANGUAGES = {
    "Brazil": "Portuguese", "Mexico": "Spanish", "Germany": "German", "France": "French", "Japan": "Japanese",
    "Russia": "Russian", "Italy": "Italian", "Greece": "Greek", "the Netherlands": "Dutch", "Sweden": "Swedish",
    "Poland": "Polish", "Turkey": "Turkish", "Egypt": "Arabic", "South Korea": "Korean", "Argentina": "Spanish",
    "Portugal": "Portuguese", "Austria": "German", "China": "Chinese", "Finland": "Finnish", "Hungary": "Hungarian",
    "Spain": "Spanish", "Norway": "Norwegian", "Denmark": "Danish", "Czechia": "Czech", "Romania": "Romanian",
    "Iran": "Persian", "Thailand": "Thai", "Vietnam": "Vietnamese", "Indonesia": "Indonesian",
    "Ukraine": "Ukrainian", "the United Kingdom": "English", "Australia": "English", "Colombia": "Spanish",
    "Peru": "Spanish", "Saudi Arabia": "Arabic", "Iceland": "Icelandic",
}
CURRENCIES = {
    "Japan": "yen", "the United Kingdom": "pound", "the United States": "dollar", "India": "rupee",
    "Russia": "ruble", "China": "yuan", "Mexico": "peso", "Switzerland": "franc", "Germany": "euro",
    "South Korea": "won", "Sweden": "krona", "Brazil": "real",
    "Thailand": "baht", "Poland": "zloty", "Turkey": "lira", "Vietnam": "dong", "Denmark": "krone",
    "Norway": "krone", "South Africa": "rand", "Nigeria": "naira", "Indonesia": "rupiah", "Malaysia": "ringgit",
    "Hungary": "forint", "Canada": "dollar", "Australia": "dollar", "France": "euro", "Italy": "euro",
    "Spain": "euro", "Egypt": "pound", "Argentina": "peso", "Saudi Arabia": "riyal",
}
ANIMAL_CLASSES = {
    "dolphin": "mammal", "shark": "fish", "eagle": "bird", "snake": "reptile", "frog": "amphibian",
    "whale": "mammal", "penguin": "bird", "crocodile": "reptile", "salmon": "fish", "bat": "mammal",
    "owl": "bird", "lizard": "reptile", "tuna": "fish", "salamander": "amphibian", "tortoise": "reptile",
    "ostrich": "bird", "horse": "mammal", "trout": "fish", "parrot": "bird", "toad": "amphibian",
    "elephant": "mammal", "cod": "fish", "sparrow": "bird", "cobra": "reptile", "mouse": "mammal",
    "tiger": "mammal", "duck": "bird", "newt": "amphibian", "iguana": "reptile", "carp": "fish", "rabbit": "mammal",
    "swan": "bird", "alligator": "reptile", "herring": "fish", "giraffe": "mammal", "robin": "bird",
    "gecko": "reptile",
}
FACTS = [  # question, right answer, three wrong answers
    ("What is the tallest mountain on Earth?", "Mount Everest", ["Mont Blanc", "Kilimanjaro", "Mount Fuji"]),
    ("What is the largest hot desert in the world?", "the Sahara", ["the Gobi", "the Kalahari", "the Mojave"]),
    ("Who developed the theory of relativity?", "Albert Einstein", ["Isaac Newton", "Charles Darwin", "Marie Curie"]),
    ("Who was the first person to walk on the Moon?", "Neil Armstrong", ["Yuri Gagarin", "Buzz Lightyear",
                                                                          "Christopher Columbus"]),
    ("Who proposed the theory of evolution by natural selection?", "Charles Darwin",
     ["Albert Einstein", "Galileo Galilei", "Louis Pasteur"]),
    ("Who wrote the play Hamlet?", "William Shakespeare", ["Charles Dickens", "Jane Austen", "Mark Twain"]),
    ("Which instrument has black and white keys?", "the piano", ["the violin", "the drum", "the flute"]),
    ("How many players are on a football (soccer) team on the field?", "eleven", ["five", "seven", "fifteen"]),
    ("How many sides does a triangle have?", "three", ["four", "five", "six"]),
    ("How many sides does a square have?", "four", ["three", "five", "eight"]),
    ("How many continents are there?", "seven", ["five", "nine", "twelve"]),
    ("What is the largest animal that has ever lived?", "the blue whale", ["the elephant", "the giraffe",
                                                                            "the shark"]),
    ("What is the fastest land animal?", "the cheetah", ["the horse", "the lion", "the tortoise"]),
    ("What do caterpillars turn into?", "butterflies", ["spiders", "beetles", "worms"]),
    ("What do cows drink?", "water", ["milk", "juice", "oil"]),
    ("Which part of the plant takes in water from the soil?", "the roots", ["the flowers", "the leaves",
                                                                             "the seeds"]),
    ("What force pulls objects toward the Earth?", "gravity", ["magnetism", "friction", "electricity"]),
    ("What is the main gas in the air we breathe?", "nitrogen", ["oxygen", "helium", "carbon dioxide"]),
    ("What is the hardest natural substance?", "diamond", ["gold", "iron", "glass"]),
    ("Which organ do people breathe with?", "the lungs", ["the liver", "the stomach", "the kidneys"]),
    ("How many bones are in the adult human body?", "206", ["106", "306", "52"]),
    ("What is the boiling point of water in Fahrenheit?", "212", ["100", "32", "180"]),
    ("Which is the smallest planet in the solar system?", "Mercury", ["Jupiter", "Earth", "Saturn"]),
    ("Which planet is farthest from the Sun?", "Neptune", ["Mercury", "Mars", "Venus"]),
    ("How long does the Earth take to orbit the Sun?", "one year", ["one day", "one month", "one week"]),
    ("What is the longest river in South America?", "the Amazon", ["the Nile", "the Danube", "the Thames"]),
    ("Which city is known as the Big Apple?", "New York", ["Los Angeles", "Chicago", "London"]),
    ("In which city is the Eiffel Tower?", "Paris", ["Rome", "London", "Berlin"]),
    ("In which country is the Great Wall?", "China", ["Japan", "India", "Egypt"]),
    ("In which country is the Colosseum?", "Italy", ["Greece", "Spain", "France"]),
    ("What do you call a baby cow?", "a calf", ["a kitten", "a puppy", "a foal"]),
    ("What do you call a baby horse?", "a foal", ["a calf", "a cub", "a chick"]),
    ("What do you call a baby sheep?", "a lamb", ["a foal", "a cub", "a kid"]),
    ("What is the color of grass?", "green", ["blue", "red", "purple"]),
    ("What color is snow?", "white", ["black", "green", "orange"]),
    ("What do we call the meal eaten in the morning?", "breakfast", ["dinner", "supper", "lunch"]),
    ("Which season comes after winter?", "spring", ["summer", "autumn", "winter"]),
    ("Which season comes after summer?", "autumn", ["spring", "winter", "summer"]),
    ("What is the tool used to measure temperature?", "a thermometer", ["a ruler", "a scale", "a compass"]),
    ("What is the tool used to find north?", "a compass", ["a thermometer", "a clock", "a ruler"]),
    ("What is the largest ocean on Earth?", "the Pacific Ocean", ["the Atlantic Ocean", "the Indian Ocean",
                                                                   "the Arctic Ocean"]),
    ("What is the largest planet in the solar system?", "Jupiter", ["Mercury", "Mars", "Venus"]),
    ("Which planet is known as the Red Planet?", "Mars", ["Venus", "Jupiter", "Saturn"]),
    ("What is the star at the centre of our solar system?", "the Sun", ["Sirius", "the Moon", "Polaris"]),
    ("At what temperature in Celsius does water freeze?", "0 degrees", ["100 degrees", "10 degrees",
                                                                        "50 degrees"]),
    ("How many legs does a spider have?", "eight", ["six", "four", "ten"]),
    ("How many legs does an insect have?", "six", ["eight", "four", "ten"]),
    ("How many days are in a week?", "seven", ["five", "ten", "six"]),
    ("How many months are in a year?", "twelve", ["ten", "eleven", "fourteen"]),
    ("How many hours are in a day?", "twenty-four", ["twelve", "twenty", "thirty"]),
    ("How many minutes are in an hour?", "sixty", ["thirty", "one hundred", "twenty-four"]),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci", ["Pablo Picasso", "Vincent van Gogh", "Claude Monet"]),
    ("Who discovered penicillin?", "Alexander Fleming", ["Louis Pasteur", "Marie Curie", "Isaac Newton"]),
    ("Who invented the telephone?", "Alexander Graham Bell", ["Thomas Edison", "Nikola Tesla", "James Watt"]),
    ("Who was the first President of the United States?", "George Washington",
     ["Abraham Lincoln", "Thomas Jefferson", "John Adams"]),
    ("What is the largest country by area?", "Russia", ["China", "Canada", "Brazil"]),
    ("What is the longest river in Africa?", "the Nile", ["the Congo", "the Niger", "the Amazon"]),
    ("On which continent is Egypt?", "Africa", ["Asia", "Europe", "South America"]),
    ("On which continent is Brazil?", "South America", ["Africa", "Asia", "Europe"]),
    ("On which continent is Japan?", "Asia", ["Europe", "Africa", "South America"]),
    ("What is H2O commonly called?", "water", ["salt", "sugar", "air"]),
    ("Which gas do plants take in from the air to make food?", "carbon dioxide", ["oxygen", "helium", "neon"]),
    ("Which organ pumps blood around the body?", "the heart", ["the lungs", "the brain", "the liver"]),
    ("Which organ do people think with?", "the brain", ["the heart", "the stomach", "the lungs"]),
    ("What do bees make?", "honey", ["milk", "butter", "cheese"]),
    ("What is frozen water called?", "ice", ["steam", "fog", "sand"]),
    ("Which animal is called the king of the jungle?", "the lion", ["the elephant", "the zebra", "the monkey"]),
    ("In which country are the pyramids of Giza?", "Egypt", ["Mexico", "Greece", "India"]),
    ("In which city is the Statue of Liberty?", "New York", ["Paris", "London", "Boston"]),
    ("In which country is Big Ben?", "the United Kingdom", ["France", "Germany", "Italy"]),
    ("Which metal is liquid at room temperature?", "mercury", ["iron", "gold", "copper"]),
    ("What do you call a baby dog?", "a puppy", ["a kitten", "a calf", "a lamb"]),
    ("What do you call a baby cat?", "a kitten", ["a puppy", "a foal", "a cub"]),
    ("What color is the sky on a clear day?", "blue", ["green", "red", "brown"]),
    ("Which season is usually the coldest?", "winter", ["summer", "spring", "autumn"]),
    ("How many wheels does a bicycle have?", "two", ["three", "four", "one"]),
    ("What is the tool used to measure length?", "a ruler", ["a thermometer", "a compass", "a clock"]),
]
OPPOSITES = {
    "hot": "cold", "big": "small", "up": "down", "fast": "slow", "happy": "sad", "dark": "light",
    "young": "old", "open": "closed", "wet": "dry", "early": "late", "full": "empty", "high": "low",
    "strong": "weak", "hard": "soft", "rich": "poor", "thick": "thin", "loud": "quiet", "long": "short",
    "win": "lose", "push": "pull", "buy": "sell", "true": "false", "clean": "dirty", "inside": "outside",
    "before": "after", "left": "right", "day": "night", "north": "south", "east": "west", "first": "last",
    "question": "answer", "friend": "enemy", "top": "bottom", "arrive": "leave", "remember": "forget",
}
PLURALS = {
    "child": "children", "mouse": "mice", "foot": "feet", "tooth": "teeth", "man": "men", "woman": "women",
    "goose": "geese", "person": "people", "sheep": "sheep", "fish": "fish", "knife": "knives", "leaf": "leaves",
    "wolf": "wolves", "half": "halves", "city": "cities", "baby": "babies", "box": "boxes", "bus": "buses",
    "cactus": "cacti", "ox": "oxen",
}
PAST_TENSES = {
    "go": "went", "eat": "ate", "see": "saw", "run": "ran", "swim": "swam", "write": "wrote", "take": "took",
    "give": "gave", "buy": "bought", "think": "thought", "bring": "brought", "teach": "taught", "catch": "caught",
    "sing": "sang", "drink": "drank", "begin": "began", "speak": "spoke", "break": "broke", "choose": "chose",
    "fly": "flew", "know": "knew", "grow": "grew", "sleep": "slept", "keep": "kept", "leave": "left",
    "find": "found", "tell": "told", "sell": "sold", "stand": "stood", "understand": "understood",
}
COMPARATIVES = {
    "good": "better", "bad": "worse", "far": "farther", "big": "bigger", "happy": "happier", "hot": "hotter",
    "thin": "thinner", "easy": "easier", "little": "less", "beautiful": "more beautiful", "wet": "wetter",
    "funny": "funnier", "sad": "sadder", "heavy": "heavier", "important": "more important", "busy": "busier",
}
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
NAMES = ["Anna", "Tom", "Maria", "Peter", "Lucy", "James", "Sara", "David", "Emma", "Paul", "Nina", "Mark",
         "Julia", "Sam", "Clara", "Ben"]
PLACES = ["library", "market", "park", "bakery", "museum", "station", "school", "beach", "bank", "zoo"]
FRUITS = ["apples", "pears", "oranges", "plums", "lemons", "peaches"]
COMMON_SENSE = [
    ("If you drop a glass on a stone floor, it will most likely", "break", ["float", "grow", "melt"]),
    ("People use an umbrella when it is", "raining", ["sunny and dry", "dark", "quiet"]),
    ("To see in a dark room, you turn on the", "light", ["oven", "radio", "tap"]),
    ("Ice cream left in the sun will", "melt", ["freeze", "grow", "burn"]),
    ("When you are thirsty, you", "drink water", ["eat salt", "run faster", "go to sleep"]),
    ("A person who is very tired will most likely want to", "sleep", ["run a race", "shout", "dance all night"]),
    ("To cut paper, you use", "scissors", ["a spoon", "a pillow", "a towel"]),
    ("Plants need sunlight and water to", "grow", ["sing", "fly", "melt"]),
    ("When the traffic light is red, cars should", "stop", ["speed up", "turn around", "honk"]),
    ("If you put water in a freezer, it turns into", "ice", ["steam", "sand", "oil"]),
    ("A fish lives in", "water", ["a tree", "the desert", "the sky"]),
    ("Birds build nests to", "lay their eggs", ["hide from rain only", "store water", "catch fish"]),
    ("You wear a coat in winter because it is", "cold", ["hot", "loud", "bright"]),
    ("To open a locked door you need a", "key", ["spoon", "pencil", "cup"]),
    ("Bread that is left out for many days becomes", "stale", ["fresh", "frozen", "sweet"]),
    ("If you are late for the bus, you should", "hurry", ["sit down", "go to bed", "cook dinner"]),
    ("A doctor works to help people who are", "sick", ["rich", "tall", "hungry"]),
    ("To write a letter by hand, you need a", "pen", ["fork", "hammer", "plate"]),
    ("When it is dark outside, it is usually", "night", ["noon", "morning", "lunchtime"]),
    ("Fire needs air and fuel to", "burn", ["freeze", "swim", "sleep"]),
    ("A heavy stone thrown into a lake will", "sink", ["float", "fly", "dissolve"]),
    ("People brush their teeth to keep them", "clean", ["dirty", "soft", "long"]),
    ("If a glass is full and you pour more water into it, the water will", "spill over",
     ["disappear", "turn to ice", "become hot"]),
    ("When you hear thunder, there is probably", "a storm", ["a rainbow", "a full moon", "snow on the ground"]),
    ("A farmer grows food in", "fields", ["libraries", "offices", "cinemas"]),
    ("To keep milk fresh, people store it in", "a fridge", ["an oven", "a drawer", "the garden"]),
    ("Someone who wants to cross a river without getting wet can use", "a bridge", ["a ladder", "a pillow",
                                                                                   "a blanket"]),
    ("A candle gets shorter as it", "burns", ["cools", "rests", "freezes"]),
    ("If you plant a seed and water it, it will", "sprout", ["shatter", "evaporate", "explode"]),
    ("A baby cannot yet", "drive a car", ["cry", "sleep", "drink milk"]),
]


def choice_item(question: str, right: str, wrong: list[str], rng: random.Random) -> dict:
    choices = [right, *wrong]
    rng.shuffle(choices)
    return {"question": question, "choices": choices, "answer": choices.index(right)}


def others(pool, right, rng: random.Random, k: int = 3) -> list:
    return rng.sample(sorted({p for p in pool if p != right}), k)


def world_knowledge(rng: random.Random) -> list[dict]:
    items = []
    for country, city in CAPITALS.items():
        items.append(choice_item(f"What is the capital of {country}?", city, others(CAPITALS.values(), city, rng), rng))
        items.append(choice_item(f"{city} is the capital of which country?", country,
                                 others(CAPITALS, country, rng), rng))
    for element, symbol in SYMBOLS.items():
        items.append(choice_item(f"What is the chemical symbol for {element}?", symbol,
                                 others(SYMBOLS.values(), symbol, rng), rng))
        items.append(choice_item(f"Which element has the chemical symbol {symbol}?", element,
                                 others(SYMBOLS, element, rng), rng))
    for country, language in LANGUAGES.items():
        items.append(choice_item(f"What language is mainly spoken in {country}?", language,
                                 others(LANGUAGES.values(), language, rng), rng))
    for country, currency in CURRENCIES.items():
        items.append(choice_item(f"What is the currency of {country} called?", currency,
                                 others(CURRENCIES.values(), currency, rng), rng))
    for animal, kind in ANIMAL_CLASSES.items():
        items.append(choice_item(f"What kind of animal is a {animal}?", kind,
                                 others(ANIMAL_CLASSES.values(), kind, rng), rng))
    items += [choice_item(q, right, wrong, rng) for q, right, wrong in FACTS]
    return items


def arithmetic(rng: random.Random, count: int = 500) -> list[dict]:
    items, seen, attempt = [], set(), 0
    while len(items) < count:
        kind, attempt = attempt % 3, attempt + 1  # the 88 small products run out first; sums and differences fill
        if kind == 0:
            a, b = rng.randint(10, 69), rng.randint(10, 29)
            question, value = f"{a} + {b} =", a + b
        elif kind == 1:
            a, b = rng.randint(30, 99), rng.randint(10, 29)
            question, value = f"{a} - {b} =", a - b
        else:
            a, b = rng.randint(2, 9), rng.randint(2, 12)
            question, value = f"{a} * {b} =", a * b
        wrong = rng.sample([value + d for d in (-10, -2, -1, 1, 2, 10) if value + d >= 0], 3)
        if question not in seen:  # a repeated question would count one capability twice
            seen.add(question)
            items.append(choice_item(question, str(value), [str(w) for w in wrong], rng))
    return items


def language(rng: random.Random) -> list[dict]:
    items = []
    words = sorted(set(OPPOSITES) | set(OPPOSITES.values()))
    for word, opposite in [*OPPOSITES.items(), *((b, a) for a, b in OPPOSITES.items())]:
        wrong = others([w for w in words if w != word], opposite, rng)
        items.append(choice_item(f"The opposite of \"{word}\" is", f"\"{opposite}\"", [f"\"{w}\"" for w in wrong],
                                 rng))
    for word, plural in PLURALS.items():
        wrong = sorted({word + "s", word + "es", plural + "s", word + "en"} - {plural})[:3]
        items.append(choice_item(f"The plural of \"{word}\" is", f"\"{plural}\"", [f"\"{w}\"" for w in wrong], rng))
    for adjective, comparative in COMPARATIVES.items():
        wrong = sorted({adjective + "er", "more " + adjective, comparative + "er", "most " + adjective}
                       - {comparative})[:3]
        items.append(choice_item(f"The comparative of \"{adjective}\" is", f"\"{comparative}\"",
                                 [f"\"{w}\"" for w in wrong], rng))
    for verb, past in PAST_TENSES.items():
        wrong = sorted({verb + "ed", verb + "d", past + "ed", verb + "s"} - {past})[:3]
        items.append(choice_item(f"The past tense of \"{verb}\" is", f"\"{past}\"", [f"\"{w}\"" for w in wrong],
                                 rng))
    for names, unit in ((DAYS, "day"), (MONTHS, "month")):
        for i, name in enumerate(names):
            right = names[(i + 1) % len(names)]
            items.append(choice_item(f"The {unit} after {name} is", right, others(names, right, rng), rng))
    return items


def story_item(rng: random.Random, kind: int) -> dict:
    """Three story families the base model answers above chance (measured on Gemma 3 270M, 40 items
    each: where someone went last 0.87, what someone bought 0.45, who came first 0.48). Families it
    answered at or below chance were dropped: the colour of the second object (0.10), what is left
    after giving some away (0.07), the shortest of three (0.23), where someone went first (0.25)."""
    a, b, c = rng.sample(NAMES, 3)
    if kind == 0:
        p1, p2 = rng.sample(PLACES, 2)
        text = f"In the morning {a} went to the {p1}. In the afternoon {a} went to the {p2}. " \
               f"Where did {a} go in the afternoon?"
        return choice_item(text, f"the {p2}", [f"the {p1}", *[f"the {p}" for p in
                                                            others([x for x in PLACES if x != p1], p2, rng, 2)]], rng)
    if kind == 1:
        f1, f2 = rng.sample(FRUITS, 2)
        text = f"{a} went to the market and bought {f1}. {a} did not buy {f2}. What did {a} buy?"
        return choice_item(text, f1, [f2, *others([x for x in FRUITS if x != f2], f1, rng, 2)], rng)
    text = f"{a} arrived first, then {b}, and {c} arrived last. Who arrived first?"
    return choice_item(text, a, [b, c], rng)


def everyday_reasoning(rng: random.Random, stories: int = 300) -> list[dict]:
    items, seen = [], set()
    while len(items) < stories:  # each story once: a repeated one would count one capability twice
        item = story_item(rng, len(items) % 3)
        if item["question"] not in seen:
            seen.add(item["question"])
            items.append(item)
    items += [choice_item(q, right, wrong, rng) for q, right, wrong in COMMON_SENSE]
    return items


YAML = """# {doc} Written or generated for the nofrog project (bench/make_general_suite.py), {count} items.
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {task}.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: choices
doc_to_target: answer
metric_list:
  - metric: acc
    higher_is_better: true
  - metric: acc_norm
    higher_is_better: true
metadata:
  version: 3
"""
DOCS = {
    "world_knowledge": "Capitals, chemical symbols, languages, currencies, animal classes, science and everyday facts.",
    "arithmetic": "Two-digit sums and differences and small products; wrong choices are off by 1, 2 or 10.",
    "language": "Opposites, comparatives, irregular plurals and past tenses, the order of days and months.",
    "everyday_reasoning": "Short generated stories with a question about them, and common-sense questions.",
}


def main() -> None:
    makers = {"world_knowledge": world_knowledge, "arithmetic": arithmetic, "language": language,
              "everyday_reasoning": everyday_reasoning}
    for seed, (task, make) in enumerate(makers.items()):
        items = make(random.Random(seed))
        (OUT / f"{task}.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
        (OUT / f"{task}.yaml").write_text(YAML.format(doc=DOCS[task], count=len(items), task=task))
        print(f"{task}: {len(items)} items")


if __name__ == "__main__":
    main()
