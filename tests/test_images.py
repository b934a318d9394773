"""Reference images: real files made with Pillow, real HTTP against a loopback server."""

from __future__ import annotations

import asyncio
import io
import os
import struct
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.connector import Connection
from PIL import Image

from bot.errors import BadAttachment
from bot.images import (
    CORRUPT,
    LINK_EXPIRED,
    MAX_EDGE,
    MAX_IMAGE_BYTES,
    NOT_AN_IMAGE,
    TOO_SLOW,
    SourceFile,
    close_executor,
    download_capped,
    fetch_references,
    prepare_reference,
    sniff_mime,
    split_by_limit,
    too_large_reason,
)

CHUNK = 64 * 1024
ELEVEN_MB = 11 * 1024 * 1024


@pytest.fixture(autouse=True, scope="module")
def _shut_pool() -> Iterator[None]:
    yield
    close_executor()


# ---------------------------------------------------------------------------- image makers


def photo(size: tuple[int, int]) -> Image.Image:
    """A photo-like RGB image: gradients with noise (so JPEG has real work to do)."""
    ramp = Image.linear_gradient("L").resize(size)
    return Image.merge("RGB", [ramp, Image.effect_noise(size, 60), ramp.transpose(1)])


def encode(im: Image.Image, image_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=image_format, **params)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def small_png(colour: str = "red") -> bytes:
    return encode(Image.new("RGB", (32, 24), colour), "PNG")


def png_bomb(width: int, height: int) -> bytes:
    """A complete, valid 1-bit PNG: a few KB on disk, width*height bytes once decoded."""

    def chunk(tag: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(tag + payload)
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


async def reason_for(data: bytes, filename: str = "file") -> str:
    with pytest.raises(BadAttachment) as caught:
        await prepare_reference(data, filename=filename)
    assert caught.value.filename == filename
    return caught.value.reason


# ---------------------------------------------------------------------------- identifying


def test_sniff_mime_reads_magic_bytes_only() -> None:
    assert sniff_mime(small_png()) == "image/png"
    assert sniff_mime(encode(Image.new("RGB", (8, 8)), "JPEG")) == "image/jpeg"
    assert sniff_mime(encode(Image.new("RGB", (8, 8)), "WEBP")) == "image/webp"
    assert sniff_mime(encode(Image.new("RGB", (8, 8)), "GIF")) == "image/gif"
    assert sniff_mime(encode(Image.new("RGB", (8, 8)), "BMP")) is None
    assert sniff_mime(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
    assert sniff_mime(b"") is None


async def test_text_file_named_png_is_not_an_image() -> None:
    with pytest.raises(BadAttachment) as caught:
        await prepare_reference(b"just some notes\n" * 100, filename="notes.png")
    assert caught.value.reason == NOT_AN_IMAGE
    assert "isn't an image" in caught.value.user_message
    assert "notes.png" in caught.value.user_message


async def test_bytes_over_the_cap_are_refused() -> None:
    oversized = small_png() + b"\x00" * MAX_IMAGE_BYTES
    assert await reason_for(oversized) == "it is larger than 10 MB"


# ---------------------------------------------------------------------------- validating


async def test_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 200_000  # 400 million pixels in a small file
    started = time.perf_counter()
    reason = await reason_for(bomb, "bomb.png")
    assert time.perf_counter() - started < 0.5  # decoding would take seconds and 400 MB
    assert "too large in pixels" in reason
    assert "20000×20000" in reason


async def test_gif_with_a_huge_logical_screen_is_refused() -> None:
    gif = bytearray(encode(Image.new("P", (1, 1)), "GIF"))
    gif[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen: 4.3 billion pixels
    assert "65535×65535" in await reason_for(bytes(gif), "screen.gif")


async def test_the_bomb_maker_makes_valid_pngs() -> None:
    # Same maker, harmless size: accepted, so the refusal above is about the size alone.
    image = await prepare_reference(png_bomb(64, 48), filename="fine.png")
    assert image.mime == "image/png"
    assert decode(image.data).size == (64, 48)


@pytest.mark.parametrize(
    ("size", "image_format"),
    [((800, 600), "JPEG"), ((3000, 2000), "JPEG"), ((800, 600), "PNG")],
    ids=["small-jpeg", "large-jpeg", "png"],
)
async def test_truncated_image_is_refused(size: tuple[int, int], image_format: str) -> None:
    whole = encode(photo(size), image_format)
    assert (await prepare_reference(whole, filename="whole")).data  # the intact file is fine
    assert await reason_for(whole[: len(whole) * 6 // 10]) == CORRUPT


async def test_gif_becomes_its_first_frame_as_png() -> None:
    frames = [Image.new("RGB", (64, 48), colour) for colour in ("red", "blue")]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    image = await prepare_reference(gif, filename="anim.gif")
    assert image.mime == "image/png"
    result = decode(image.data).convert("RGB")
    assert result.size == (64, 48)
    assert result.getpixel((10, 10)) == (255, 0, 0)


async def test_webp_is_accepted_as_is() -> None:
    webp = encode(photo((640, 480)), "WEBP", quality=80)
    image = await prepare_reference(webp, filename="pic.webp")
    assert image.mime == "image/webp"
    assert image.data == webp


async def test_animated_webp_becomes_its_first_frame() -> None:
    frames = [Image.new("RGB", (64, 48), colour) for colour in ("red", "blue")]
    webp = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    image = await prepare_reference(webp, filename="anim.webp")
    assert image.mime in ("image/jpeg", "image/png")
    red, green, blue = decode(image.data).convert("RGB").getpixel((10, 10))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60


async def test_small_png_passes_through_byte_identical() -> None:
    png = encode(photo((1024, 768)), "PNG")
    image = await prepare_reference(png, filename="shot.png")
    assert image.mime == "image/png"
    assert image.data == png


# ---------------------------------------------------------------------------- downscaling


async def test_large_jpeg_is_downscaled_to_the_model_edge() -> None:
    image = await prepare_reference(encode(photo((3000, 2000)), "JPEG"), filename="big.jpg")
    assert image.mime == "image/jpeg"
    assert decode(image.data).size == (MAX_EDGE, 1024)


async def test_exif_rotated_jpeg_is_upright_after_downscale() -> None:
    stored = Image.new("RGB", (3000, 2000))
    for box, colour in [
        ((0, 0, 1500, 1000), "red"), ((1500, 0, 3000, 1000), "lime"),
        ((0, 1000, 1500, 2000), "blue"), ((1500, 1000, 3000, 2000), "white"),
    ]:
        stored.paste(colour, box)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the left column becomes the top row
    data = encode(stored, "JPEG", exif=exif)

    image = await prepare_reference(data, filename="phone.jpg")
    result = decode(image.data).convert("RGB")
    assert result.size == (1024, MAX_EDGE)  # portrait, as the phone showed it
    assert 0x0112 not in result.getexif()
    colours = {"red": (255, 0, 0), "lime": (0, 255, 0), "blue": (0, 0, 255), "white": (255,) * 3}
    for (fx, fy), name in [
        ((0.1, 0.1), "blue"), ((0.9, 0.1), "red"), ((0.1, 0.9), "white"), ((0.9, 0.9), "lime"),
    ]:
        got = result.getpixel((int(fx * result.width), int(fy * result.height)))
        assert isinstance(got, tuple)
        assert max(abs(a - b) for a, b in zip(colours[name], got, strict=True)) < 40, name


async def test_large_png_with_transparency_stays_png() -> None:
    im = photo((2000, 1000)).convert("RGBA")
    im.paste((0, 0, 0, 0), (0, 0, 1000, 1000))  # left half transparent
    image = await prepare_reference(encode(im, "PNG"), filename="sticker.png")
    assert image.mime == "image/png"
    result = decode(image.data)
    assert result.size == (MAX_EDGE, 768)
    assert result.mode == "RGBA"
    assert result.getchannel("A").getextrema() == (0, 255)


async def test_large_opaque_rgba_and_cmyk_become_jpeg() -> None:
    opaque = encode(photo((2000, 1000)).convert("RGBA"), "PNG")
    cmyk = encode(photo((2000, 1000)).convert("CMYK"), "JPEG")
    for data in (opaque, cmyk):
        image = await prepare_reference(data, filename="x")
        assert image.mime == "image/jpeg"
        result = decode(image.data)
        assert (result.size, result.mode) == ((MAX_EDGE, 768), "RGB")


async def test_image_within_the_edge_but_too_many_bytes_is_reencoded() -> None:
    noise = Image.frombytes("RGB", (1536, 1536), os.urandom(1536 * 1536 * 3))
    png = encode(noise, "PNG", compress_level=1)
    assert len(png) > 7_000_000
    image = await prepare_reference(png, filename="noise.png")
    assert image.mime == "image/jpeg"
    assert len(image.data) < len(png)
    assert decode(image.data).size == (1536, 1536)


async def test_preparing_does_not_block_the_event_loop() -> None:
    big = encode(photo((4000, 3000)), "JPEG", quality=90)
    assert len(big) < MAX_IMAGE_BYTES
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    await prepare_reference(big, filename="one.jpg")
    images = await asyncio.gather(*(prepare_reference(big, filename=f"{n}.jpg")
                                    for n in range(4)))
    elapsed = time.perf_counter() - started
    stop.set()
    await ticking
    assert len(images) == 4
    # Inline, each image would hold the loop for its whole decode and resize.
    assert max(gaps) < 0.1, f"loop stalled {max(gaps) * 1000:.0f} ms"
    assert len(gaps) > elapsed / 0.01  # the ticker really ran all along


# ---------------------------------------------------------------------------- limits


def test_split_by_limit_counts_what_is_already_there() -> None:
    assert split_by_limit([1, 2, 3], already=1, limit=3) == ([1, 2], [3])
    assert split_by_limit([1, 2], already=0, limit=14) == ([1, 2], [])
    assert split_by_limit([1, 2], already=5, limit=3) == ([], [1, 2])


async def test_fifteen_references_with_the_previous_result_keep_thirteen(cdn: CDN) -> None:
    colours = ["red", "green", "blue", "white", "black"]
    files = [(f"ref{n:02}.png", small_png(colours[n % 5])) for n in range(15)]
    cdn.files.update(files)
    sources = [SourceFile(name, f"{cdn.url}/files/{name}", 100) for name, _ in files]
    images, warnings = await fetch_references(cdn.session, sources, already=1)
    assert [image.data for image in images] == [data for _, data in files[:13]]
    assert warnings == [
        "Only 14 images can be used per turn (the image being edited counts as one); "
        "left out: ref13.png, ref14.png"
    ]


async def test_one_bad_file_refuses_the_whole_turn(cdn: CDN) -> None:
    files = [(f"ok{n}.png", small_png()) for n in range(3)] + [("late.png", b"not an image")]
    cdn.files.update(files)
    sources = [SourceFile(name, f"{cdn.url}/files/{name}", 100) for name, _ in files]
    with pytest.raises(BadAttachment) as caught:
        await fetch_references(cdn.session, sources)
    assert caught.value.filename == "late.png"


# ---------------------------------------------------------------------------- downloading


@dataclass
class CDN:
    """A loopback stand-in for Discord's CDN, with a client session that records what it read."""

    url: str
    session: aiohttp.ClientSession
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    sent: dict[str, int] = field(default_factory=dict)
    readers: list[aiohttp.StreamReader] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def bytes_read_by_client(self) -> int:
        assert len(self.readers) == 1
        return self.readers[0].total_bytes


async def _stream(cdn: CDN, request: web.Request, total: int, *, declare: bool) -> None:
    response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
    if declare:
        response.content_length = total
    else:
        response.enable_chunked_encoding()
    await response.prepare(request)
    key = request.path
    cdn.sent[key] = 0
    block = b"\xff\xd8\xff" + b"\x00" * (CHUNK - 3)
    try:
        while cdn.sent[key] < total:
            piece = block[: total - cdn.sent[key]]
            await response.write(piece)
            cdn.sent[key] += len(piece)
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        pass  # the client hung up, as it should


def _app(cdn: CDN) -> web.Application:
    async def file(request: web.Request) -> web.StreamResponse:
        cdn.requests.append(request.match_info["name"])
        cdn.in_flight += 1
        cdn.most_in_flight = max(cdn.most_in_flight, cdn.in_flight)
        await asyncio.sleep(0.01)  # long enough for concurrent requests to overlap
        cdn.in_flight -= 1
        data = cdn.files.get(request.match_info["name"])
        return web.Response(body=data) if data is not None else web.Response(status=404)

    async def chunked(request: web.Request) -> web.StreamResponse:
        await _stream(cdn, request, int(request.match_info["size"]), declare=False)
        return web.Response()  # never sent: the stream above was prepared

    async def declared(request: web.Request) -> web.StreamResponse:
        await _stream(cdn, request, int(request.match_info["size"]), declare=True)
        return web.Response()

    async def forbidden(request: web.Request) -> web.StreamResponse:
        return web.Response(status=403)

    async def slow(request: web.Request) -> web.StreamResponse:
        await cdn.release.wait()
        return web.Response(body=small_png())

    app = web.Application()
    app.router.add_get("/files/{name}", file)
    app.router.add_get("/chunked/{size}", chunked)
    app.router.add_get("/declared/{size}", declared)
    app.router.add_get("/forbidden", forbidden)
    app.router.add_get("/slow", slow)
    return app


def _recording(readers: list[aiohttp.StreamReader]) -> type[aiohttp.ClientResponse]:
    class Recording(aiohttp.ClientResponse):
        async def start(self, connection: Connection) -> aiohttp.ClientResponse:
            response = await super().start(connection)
            readers.append(self.content)
            return response

    return Recording


@pytest.fixture
async def cdn() -> AsyncIterator[CDN]:
    readers: list[aiohttp.StreamReader] = []
    session = aiohttp.ClientSession(response_class=_recording(readers))
    cdn = CDN(url="", session=session, readers=readers)
    runner = web.AppRunner(_app(cdn))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    cdn.url = f"http://{host}:{port}"
    yield cdn
    cdn.release.set()
    await session.close()
    await runner.cleanup()


async def _close_delimited_server(total: int, sent: list[int]) -> asyncio.Server:
    """HTTP/1.1 with neither Content-Length nor chunking: the body ends when the socket does."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n")
        block = b"\x89PNG\r\n\x1a\n" + b"\x00" * (CHUNK - 8)
        try:
            while sent[0] < total:
                writer.write(block)
                sent[0] += len(block)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_download_returns_the_file(cdn: CDN) -> None:
    cdn.files["a.png"] = small_png()
    data = await download_capped(cdn.session, f"{cdn.url}/files/a.png", filename="a.png")
    assert data == small_png()


@pytest.mark.parametrize("route", ["chunked", "declared"])
async def test_eleven_megabytes_are_refused(cdn: CDN, route: str) -> None:
    with pytest.raises(BadAttachment) as caught:
        await download_capped(cdn.session, f"{cdn.url}/{route}/{ELEVEN_MB}", filename="huge.jpg")
    assert caught.value.reason == "it is larger than 10 MB"
    read = cdn.bytes_read_by_client()
    if route == "declared":
        assert read < 1024 * 1024  # refused on the header, before the body
    else:
        # The cap plus one chunk plus aiohttp's read buffer; far short of the 11 MB sent.
        assert MAX_IMAGE_BYTES < read < MAX_IMAGE_BYTES + 512 * 1024


async def test_eleven_megabytes_without_any_length_are_refused(cdn: CDN) -> None:
    sent = [0]
    server = await _close_delimited_server(ELEVEN_MB, sent)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(BadAttachment) as caught:
            await download_capped(cdn.session, f"http://127.0.0.1:{port}/x", filename="x.png")
    assert caught.value.reason == too_large_reason()
    assert MAX_IMAGE_BYTES < cdn.bytes_read_by_client() < MAX_IMAGE_BYTES + 512 * 1024


async def test_an_endless_stream_is_cut_off(cdn: CDN) -> None:
    endless = 512 * 1024 * 1024
    with pytest.raises(BadAttachment):
        await download_capped(cdn.session, f"{cdn.url}/chunked/{endless}", filename="x.jpg")
    await asyncio.sleep(0.2)  # let the server notice the hang-up
    assert cdn.sent["/chunked/" + str(endless)] < 64 * 1024 * 1024


@pytest.mark.parametrize("path", ["/files/gone.png", "/forbidden"])
async def test_expired_link_says_so(cdn: CDN, path: str) -> None:
    with pytest.raises(BadAttachment) as caught:
        await download_capped(cdn.session, cdn.url + path, filename="gone.png")
    assert caught.value.reason == LINK_EXPIRED


async def test_slow_download_times_out(cdn: CDN) -> None:
    with pytest.raises(BadAttachment) as caught:
        await download_capped(cdn.session, f"{cdn.url}/slow", filename="s.png", timeout=0.3)
    assert caught.value.reason == TOO_SLOW


async def test_fetch_downloads_only_the_references_it_keeps(cdn: CDN) -> None:
    sources = []
    for n in range(16):
        cdn.files[f"{n}.png"] = small_png()
        sources.append(SourceFile(f"{n}.png", f"{cdn.url}/files/{n}.png", 100))
    images, warnings = await fetch_references(cdn.session, sources, already=1)
    assert len(images) == 13
    assert sorted(cdn.requests) == sorted(f"{n}.png" for n in range(13))
    assert warnings and warnings[0].endswith("left out: 13.png, 14.png, 15.png")
    assert cdn.most_in_flight == 3  # concurrent, but never 13 raw files held at once


async def test_fetch_refuses_a_declared_oversize_before_downloading(cdn: CDN) -> None:
    sources = [
        SourceFile("ok.png", f"{cdn.url}/files/ok.png", 100),
        SourceFile("big.jpg", f"{cdn.url}/files/big.jpg", MAX_IMAGE_BYTES + 1),
    ]
    with pytest.raises(BadAttachment) as caught:
        await fetch_references(cdn.session, sources)
    assert caught.value.filename == "big.jpg"
    assert cdn.requests == []


async def test_fetch_does_not_trust_a_small_declared_size(cdn: CDN) -> None:
    lying = SourceFile("liar.jpg", f"{cdn.url}/chunked/{ELEVEN_MB}", declared_size=1000)
    with pytest.raises(BadAttachment) as caught:
        await fetch_references(cdn.session, [lying])
    assert caught.value.reason == too_large_reason()
