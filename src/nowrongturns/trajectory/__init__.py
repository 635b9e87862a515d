"""The trajectory file: its format, its one writer and one reader, the flat layout of the state
a checkpoint stores, and how it meets a full disk.
"""
