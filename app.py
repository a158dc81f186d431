"""The vcq_hf web demo as a Hugging Face Space: `python app.py` serves the bundled demo checkpoint with Gradio.

`python app.py --model PATH_OR_HUB_ID` serves another saved VCQPipeline; the other flags are those of `vcq demo`
(`python app.py --help`). A Space sets GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, which the defaults read. Needs the
demo extra: `pip install -e ".[demo]"`.
"""

import sys
from pathlib import Path


if __name__ == "__main__":
    # Run from a source checkout without installing the package (as a Space does); an installed vcq_hf is used
    # otherwise.
    source = Path(__file__).resolve().parent / "src"
    if (source / "vcq_hf").is_dir() and str(source) not in sys.path:
        sys.path.insert(0, str(source))

    from vcq_hf.gradio_app import main

    sys.exit(main())
