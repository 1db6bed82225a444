# Runs after boot.py on every reset: load config, build the board, publish forever.
import app
import board

app.main(board)
