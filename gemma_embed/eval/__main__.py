"""python -m gemma_embed.eval --model FOLDER --sts FILE ...  (the same command as train/evaluate.py)"""

from gemma_embed.eval.run import main

main()
