"""The WordPiece tokenizer of the tiny test checkpoints (testing.checkpoints), learned offline.

Only the standard library and the marker tokens are imported at module level; tokenizers and
transformers load when a tokenizer is built.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from typing import Any

from gliclass_pipelines.taxonomy.labels import MARKERS

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
VOCAB_SIZE = 1500


# A few hundred words of varied English, enough for a WordPiece vocabulary of well over a thousand entries
# in which common words (and typical label names) are single tokens.
CORPUS = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Stocks fell sharply on Monday after the central bank raised interest rates again.",
    "Investors worried that inflation would keep rising through the winter months.",
    "The company reported record profits and announced a new dividend for shareholders.",
    "Our startup raised twenty million dollars to build cheaper batteries for electric cars.",
    "The home team won the championship in overtime with a brilliant goal from the captain.",
    "Fans celebrated in the streets until midnight after the final whistle.",
    "The coach praised the defense but said the players must improve their passing.",
    "She broke the national record in the marathon and qualified for the olympic games.",
    "The tennis match lasted five hours before rain stopped play at the stadium.",
    "Parliament passed the new budget after a long debate about taxes and public spending.",
    "The president met foreign leaders to discuss trade, security and climate policy.",
    "Voters will choose a new mayor next month in a close and bitter election.",
    "The senator criticized the government for ignoring the rural economy.",
    "Protesters gathered outside the court to demand justice and equal rights.",
    "Scientists discovered a new species of frog in the tropical rainforest.",
    "The telescope captured images of a distant galaxy formed billions of years ago.",
    "Researchers found that regular exercise improves memory and reduces stress.",
    "A vaccine trial showed strong protection against the virus in older patients.",
    "The hospital opened a new clinic for children with heart disease.",
    "Doctors recommend drinking water, sleeping well and eating fresh vegetables.",
    "Engineers released a software update that fixes security bugs in the browser.",
    "The new phone has a faster processor, a better camera and a bigger battery.",
    "Artificial intelligence models can now translate speech between many languages.",
    "Hackers stole personal data from millions of customers of the online store.",
    "The cloud service was down for three hours because of a network failure.",
    "Programmers write code, test it carefully and deploy it to production servers.",
    "This restaurant serves delicious pasta, fresh bread and excellent coffee.",
    "The soup was cold, the waiter was rude and the bill was far too expensive.",
    "I loved the movie, the acting was wonderful and the music was beautiful.",
    "The concert was boring and the sound was terrible, so we left early.",
    "The hotel room was clean and quiet, with a lovely view of the mountains.",
    "Our flight was delayed for six hours and the airline lost my luggage.",
    "We traveled by train across the country and visited small villages and old castles.",
    "The weather forecast says heavy snow and strong winds will hit the north tomorrow.",
    "A hot and sunny summer caused drought, wildfires and water shortages.",
    "Farmers hope that spring rain will help the wheat and corn harvest.",
    "The museum displays ancient paintings, sculptures and rare books from the library.",
    "Students prepared for their exams in mathematics, history, chemistry and physics.",
    "The teacher explained the lesson slowly so that every child could understand.",
    "The university announced scholarships for students from poor families.",
    "He bought a used car, but the engine broke down after only two weeks.",
    "Please send the invoice by email and call me if you have any questions.",
    "The package arrived damaged, and customer support has not answered my complaint.",
    "Thank you for the fast delivery, the product works perfectly and looks great.",
    "The author's latest novel tells the story of a family during the war.",
    "The band will release a new album and start a world tour in autumn.",
    "The police arrested two suspects after a robbery at the jewelry shop.",
    "Firefighters rescued a cat from the roof of a burning building downtown.",
    "The city plans to build new bike lanes, parks and affordable housing.",
    "Oil prices jumped after the storm damaged refineries along the coast.",
    "The bank offers loans with low interest to small businesses and farmers.",
    "Unemployment dropped to its lowest level in a decade as factories hired workers.",
    "The government will invest in solar, wind and nuclear energy to cut emissions.",
    "Climate change is melting glaciers and raising sea levels around the world.",
    "The earthquake destroyed bridges and roads, and thousands of people lost their homes.",
    "Volunteers delivered food, blankets and medicine to families in the flooded region.",
    "My grandmother bakes apple pie every sunday and invites the whole neighborhood.",
    "The puppy chewed my shoes, but it is still the sweetest dog I have ever had.",
    "Gardening is a relaxing hobby, and tomatoes grow well in warm sunny places.",
    "The chess champion defended her title against a young challenger from abroad.",
    "Basketball, football, baseball, hockey, cricket, rugby, golf and swimming are popular sports.",
    "Labels such as sports, politics, business, technology, science, health, entertainment and travel.",
    "Other categories include finance, economy, education, weather, food, crime, environment and culture.",
    "Sentiment can be positive, negative or neutral.",
    "Emotions include joy, anger, fear, sadness, disgust and surprise.",
    "Urgent requests, spam messages, billing questions, refunds, shipping problems and account issues.",
    "Some reviews are happy, some are angry, and some are simply confused or disappointed.",
    "One, two, three, four, five, six, seven, eight, nine, ten, hundred, thousand, million.",
    "Monday, Tuesday, Wednesday, Thursday, Friday, Saturday and Sunday; January, June and December.",
    "Red, orange, yellow, green, blue, purple, black, white and gray are common colors.",
    "What happened, who did it, where, when, why and how did the story end?",
    "It is not clear whether the new rules will help or hurt ordinary people.",
    "After years of research, the team finally published their results in a famous journal.",
    "Smart watches track your heart rate, your steps and how long you sleep each night.",
    "The game developer announced a sequel with better graphics and an open world.",
    "Electric scooters are cheap and convenient, yet many cities want to ban them.",
    "The judge sentenced the former minister to prison for corruption and fraud.",
    "Diplomats signed a peace agreement that ends a conflict lasting several years.",
    "Tourists crowded the beaches, markets and museums during the summer festival.",
    "Some text about something happening somewhere, written quickly by someone.",
)


def _learn_wordpiece_vocab(corpus: Iterable[str], size: int) -> dict[str, int]:
    """A WordPiece vocabulary of at most ``size`` entries, learned deterministically from ``corpus``.

    tokenizers' WordPieceTrainer breaks ties between equally frequent merges in hash-map order, which
    changes from one call to the next, so the same corpus would give a different vocabulary (and the same
    seed a different checkpoint) every time. Instead: the special tokens, every character alone and as a
    ``##`` continuation (so no ASCII word becomes [UNK]), the corpus's words, then frequent word-initial and
    ``##`` word-final pieces; by frequency, ties broken alphabetically.
    """
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in corpus:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    pieces: Counter[str] = Counter()
    for word, count in words.items():
        for end in range(2, len(word)):
            pieces[word[:end]] += count
        for start in range(1, len(word) - 1):
            pieces["##" + word[start:]] += count

    alphabet = sorted(set(string.ascii_lowercase + string.digits + string.punctuation).union(*words))
    tokens = [*BERT_SPECIAL_TOKENS, *alphabet, *(f"##{char}" for char in alphabet)]
    seen = set(tokens)
    candidates = sorted(words.items(), key=_by_frequency) + sorted(pieces.items(), key=_by_frequency)
    for candidate, _ in candidates:
        if len(tokens) >= size:
            break
        if candidate not in seen:
            tokens.append(candidate)
            seen.add(candidate)
    return {token: index for index, token in enumerate(tokens)}


def _by_frequency(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def build_tokenizer(corpus: Iterable[str], max_length: int, backbone: str) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = _learn_wordpiece_vocab(corpus, VOCAB_SIZE)
    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )

    # Like the real ones: BERT and DeBERTa tokenizers also return token_type_ids, which the GLiClass
    # pipeline passes on to the backbone; ModernBERT's tokenizer does not (its model would ignore them).
    if backbone in ("modernbert", "t5"):
        model_input_names = ["input_ids", "attention_mask"]
    else:
        model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        mask_token="[MASK]",
        model_max_length=max_length,
        model_input_names=model_input_names,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(MARKERS)})
    return tokenizer
