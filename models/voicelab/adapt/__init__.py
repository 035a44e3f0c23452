"""Speaker adaptation of the vocoder: the parent's own voice, learned from their recordings.

`front`: Kokoro's frame-rate front as a torch module, weights from the installed vocoder.onnx.
`vocoder`: front + student head, end to end, with trainable parts chosen by name.
`signal`, `dtw`, `align`: a parent's recording aligned to its text as synthesizer outputs.
`measure`: copy-synthesis, the end-to-end check of the alignment (docs/adaptation.md).
`lora`, `tune`, `run`: the studio's fine-tuning of the head on a parent's recordings (a low-rank delta).
`trial`: that path tried on evaluation-set readers, judged on recordings it never heard.
"""
