"""Labels drawn onto TensorBoard previews."""

import torch

from ssl_pretrain.tasks.parts.preview import draw_labels, label_each


def test_draw_labels_upscales_and_writes_red_text_where_asked():
    image = torch.rand(1, 10, 10)
    plain = draw_labels(image, [], scale=3)
    assert plain.shape == (3, 30, 30)
    expected = image.repeat_interleave(3, 1).repeat_interleave(3, 2).expand(3, -1, -1)
    assert torch.allclose(plain, expected, atol=0.5 / 255)
    marked = draw_labels(torch.zeros(1, 10, 10), [(5, 0, "7")], scale=3)
    red = marked[0] - marked[1] > 0.5
    assert red[15:, :12].any() and not red[:15].any()  # the text starts at row 5 of the original


def test_label_each_marks_every_image():
    images = torch.zeros(3, 1, 8, 8)
    out = label_each(images, ["0", "90", "180"])
    assert out.shape == (3, 3, 24, 24)
    assert all((out[i, 0] - out[i, 1] > 0.5).any() for i in range(3))
