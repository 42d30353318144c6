"""Draw the 320×240 test picture of examples/dump.sh and docs/dump.md: a sky gradient, a sun, a house with a
door and a window, a striped field. Usage: python examples/scene.py [PATH] (default: scene.png here)"""

import sys

from PIL import Image, ImageDraw

image = Image.new("RGB", (320, 240))
draw = ImageDraw.Draw(image)
for y in range(240):
    draw.line([(0, y), (320, y)], fill=(90 + y // 3, 140 + y // 4, 230))
draw.ellipse([230, 25, 290, 85], fill=(255, 210, 40))
for x in range(0, 320, 16):
    draw.rectangle([x, 170, x + 7, 240], fill=(40, 150, 60))
    draw.rectangle([x + 8, 170, x + 15, 240], fill=(70, 190, 80))
draw.rectangle([60, 100, 170, 190], fill=(200, 60, 50))
draw.polygon([(50, 100), (115, 50), (180, 100)], fill=(110, 40, 30))
draw.rectangle([100, 140, 130, 190], fill=(60, 40, 30))
draw.rectangle([140, 115, 160, 135], fill=(240, 240, 200))
image.save(sys.argv[1] if len(sys.argv) > 1 else "scene.png")
