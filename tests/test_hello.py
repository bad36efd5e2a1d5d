"""The seed's smallest example (min-char-rnn): a vanilla RNN learns "hello".

Vocabulary [h, e, l, o]; inputs h, e, l, l; targets e, l, l, o. The two `l`s
need different answers, so the recurrence (not the input alone) must carry
where in the word we are."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recurrax import models, train
from recurrax.nn import losses


def test_vanilla_rnn_learns_hello():
    vocab = ["h", "e", "l", "o"]
    word = [vocab.index(c) for c in "hello"]
    batch = {"inputs": jnp.array(word[:-1])[:, None], "targets": jnp.array(word[1:])[:, None]}
    lm = models.language_model("rnn", len(vocab), 16)

    def loss_fn(params, batch, carry, key):
        _, logits = lm.apply(params, batch["inputs"])
        return losses.softmax_cross_entropy(logits, batch["targets"]), (carry, {})

    opt = train.make_optimizer(0.05, clip_norm=5.0, base=optax.adam)
    state = train.create_train_state(lm.init(jax.random.key(0)), opt)
    step = train.make_train_step(loss_fn, opt)
    for _ in range(150):
        state, metrics = step(state, batch)
    _, logits = lm.apply(state.params, batch["inputs"])
    predicted = "".join(vocab[i] for i in np.asarray(jnp.argmax(logits[:, 0], -1)))
    assert predicted == "ello"
    assert float(metrics["loss"]) < 0.05
