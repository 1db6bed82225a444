# Runs after boot.py on every reset: load config, build the board, publish forever.
import time

while True:
    try:
        import app
        break
    except ImportError as e:  # an incomplete flash: say so, never fall to the REPL
        print("ERROR firmware incomplete: %s; re-run 'sensorpub flash'; retrying in 30 s" % e)
        time.sleep(30)

app.main("board")
