"""Speaker adaptation of the vocoder (issue 13): the foundations.

`front`: Kokoro's frame-rate front as a torch module, weights from the installed vocoder.onnx.
`vocoder`: front + student head, end to end, with trainable parts chosen by name.
`signal`, `dtw`, `align`: a parent's recording aligned to its text as synthesizer outputs.
`measure`: copy-synthesis, the end-to-end check of the alignment (docs/adaptation.md).
`probe`: a first fine-tuning probe of step 3 on one evaluation-set reader (not the studio's loop).
"""
