"""align_pair: image + mask (raster or polygons, any CRS) onto one grid, cropped to the overlap.

Expected values are computed from coordinates with pyproj, independently of the
code under test: pixel centres of the output are transformed to lon/lat and
looked up in the class layout the fixtures were built from.
"""

import json
import os

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from tests.rasters import write_raster
from tests.recorder import Recorder
from wetland_unet_plugin.core.alignment import align_pair
from wetland_unet_plugin.core.feedback import Canceled, CoreError

# The image: UTM zone 18N, 10 m pixels, odd size, origin not on a round number.
IMG_CRS = "EPSG:32618"
IMG_X0, IMG_Y0, IMG_PX = 600003.0, 4400007.0, 10.0
IMG_W, IMG_H = 137, 91
DESCRIPTIONS = ("Blue", "Green", "Red", "NIR")

# The mask raster: EPSG:4326, non-square pixels, extent larger than the image.
M_X0, M_Y0, M_DX, M_DY = -73.845, 39.752, 0.00015, 0.00012
M_W, M_H = 250, 200
LON_B = M_X0 + 110 * M_DX  # class boundary (meridian), on a mask pixel edge
LAT_B = M_Y0 - 80 * M_DY  # class boundary (parallel), on a mask pixel edge
# A block of mask nodata (255) inside the image: mask columns 140..150, rows 60..70.
HOLE = (M_X0 + 140 * M_DX, M_Y0 - 70 * M_DY, M_X0 + 150 * M_DX, M_Y0 - 60 * M_DY)

M_PER_DEG_LAT = 111_000.0
M_PER_DEG_LON = 111_320.0 * np.cos(np.radians(39.74))


def write_vector(
    path,
    features,
    field,
    field_type,
    driver="GPKG",
    layer="classes",
    epsg=4326,
    extra_point_layer=False,
):
    """features: [(wkt, value)]; writes with OGR in the given EPSG."""
    from osgeo import ogr, osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ds = ogr.GetDriverByName(driver).CreateDataSource(str(path))
    if extra_point_layer:
        points = ds.CreateLayer("points", srs, ogr.wkbPoint)
        points.CreateField(ogr.FieldDefn(field, ogr.OFTInteger))
        feature = ogr.Feature(points.GetLayerDefn())
        feature.SetField(field, 1)
        feature.SetGeometry(ogr.CreateGeometryFromWkt("POINT (-73.825 39.74)"))
        points.CreateFeature(feature)
    lyr = ds.CreateLayer(layer, srs, ogr.wkbPolygon)
    lyr.CreateField(ogr.FieldDefn(field, ogr.OFTInteger if field_type == "int" else ogr.OFTString))
    for wkt, value in features:
        feature = ogr.Feature(lyr.GetLayerDefn())
        feature.SetField(field, value)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        lyr.CreateFeature(feature)
    ds = None
    return str(path)


def rect(lon0, lat0, lon1, lat1):
    return f"POLYGON (({lon0} {lat0}, {lon1} {lat0}, {lon1} {lat1}, {lon0} {lat1}, {lon0} {lat0}))"


def image_data():
    rng = np.random.default_rng(7)
    data = rng.integers(1, 4000, size=(4, IMG_H, IMG_W)).astype(np.uint16)
    data[:, 5, 7] = 0  # a nodata pixel, kept as it is
    return data


def expected_mask_class(lon, lat):
    cls = 1 + (lon >= LON_B).astype(int) + 2 * (lat < LAT_B).astype(int)
    in_hole = (lon >= HOLE[0]) & (lon < HOLE[2]) & (lat >= HOLE[1]) & (lat < HOLE[3])
    return np.where(in_hole, 0, cls)


def near_mask_boundary(lon, lat, tol_m):
    near = np.abs(lon - LON_B) * M_PER_DEG_LON < tol_m
    near |= np.abs(lat - LAT_B) * M_PER_DEG_LAT < tol_m
    for x in (HOLE[0], HOLE[2]):
        near |= np.abs(lon - x) * M_PER_DEG_LON < tol_m
    for y in (HOLE[1], HOLE[3]):
        near |= np.abs(lat - y) * M_PER_DEG_LAT < tol_m
    return near


def pixel_centres_lonlat(ds):
    cols, rows = np.meshgrid(np.arange(ds.width) + 0.5, np.arange(ds.height) + 0.5)
    t = ds.transform
    x = t.c + t.a * cols
    y = t.f + t.e * rows
    lon, lat = Transformer.from_crs(ds.crs.to_wkt(), "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(lon), np.asarray(lat)


def image_validity(ds, margin=0.25):
    """Where each pixel centre of an output grid falls in the source image (pyproj):
    (valid, invalid), each sure to ``margin`` of a source pixel. Invalid is off the
    image's footprint or on its nodata pixel (row 5, column 7); pixels near an edge of
    either are in neither."""
    cols, rows = np.meshgrid(np.arange(ds.width) + 0.5, np.arange(ds.height) + 0.5)
    t = ds.transform
    x, y = t.c + t.a * cols, t.f + t.e * rows
    sx, sy = Transformer.from_crs(ds.crs.to_wkt(), IMG_CRS, always_xy=True).transform(x, y)
    fc, fr = (np.asarray(sx) - IMG_X0) / IMG_PX, (IMG_Y0 - np.asarray(sy)) / IMG_PX

    def within(c0, c1, r0, r1, m):
        return (fc > c0 + m) & (fc < c1 - m) & (fr > r0 + m) & (fr < r1 - m)

    on_image = within(0, IMG_W, 0, IMG_H, margin)
    off_image = ~within(0, IMG_W, 0, IMG_H, -margin)
    on_nodata = within(7, 8, 5, 6, margin)
    near_nodata = within(7, 8, 5, 6, -margin)
    return on_image & ~near_nodata, off_image | on_nodata


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("align")
    image = write_raster(
        folder / "image.tif",
        image_data(),
        IMG_CRS,
        from_origin(IMG_X0, IMG_Y0, IMG_PX, IMG_PX),
        nodata=0,
        descriptions=DESCRIPTIONS,
    )
    cols, rows = np.meshgrid(np.arange(M_W) + 0.5, np.arange(M_H) + 0.5)
    lon, lat = M_X0 + cols * M_DX, M_Y0 - rows * M_DY
    mask = expected_mask_class(lon, lat).astype(np.uint8)
    mask[mask == 0] = 255
    transform = rasterio.transform.Affine(M_DX, 0, M_X0, 0, -M_DY, M_Y0)
    mask_path = write_raster(folder / "mask_wgs84.tif", mask, "EPSG:4326", transform, nodata=255)
    return {"folder": folder, "image": image, "mask": mask_path}


def check_same_grid(a_path, b_path):
    with rasterio.open(a_path) as a, rasterio.open(b_path) as b:
        assert a.crs == b.crs
        assert a.transform == b.transform
        assert (a.width, a.height) == (b.width, b.height)


def test_raster_mask_in_other_crs_keeps_image_grid_bit_identical(scene, tmp_path):
    out_img, out_mask = str(tmp_path / "img.tif"), str(tmp_path / "mask.tif")
    fb = Recorder()
    result = align_pair(scene["image"], out_img, out_mask, mask=scene["mask"], feedback=fb)
    check_same_grid(out_img, out_mask)
    # The mask covers the whole image: the output is the image's own grid and pixels.
    with rasterio.open(out_img) as ds, rasterio.open(scene["image"]) as src:
        assert ds.crs == src.crs
        assert ds.transform == src.transform
        assert (ds.width, ds.height) == (IMG_W, IMG_H)
        assert np.array_equal(ds.read(), image_data())
        assert ds.dtypes[0] == "uint16" and ds.nodata == 0
        assert ds.descriptions == DESCRIPTIONS
        assert ds.profile["tiled"] and ds.profile["compress"] == "deflate"
    assert result["image_resampled"] is False
    assert (result["width"], result["height"]) == (IMG_W, IMG_H)
    assert result["transform"] == [IMG_PX, 0.0, IMG_X0, 0.0, -IMG_PX, IMG_Y0]
    with rasterio.open(out_mask) as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == 0
        got = ds.read(1)
        lon, lat = pixel_centres_lonlat(ds)
    expected = expected_mask_class(lon, lat)
    sure = ~near_mask_boundary(lon, lat, IMG_PX)
    assert sure.sum() > 0.8 * got.size
    assert np.array_equal(got[sure], expected[sure])
    assert set(np.unique(got)) <= {0, 1, 2, 3, 4}
    assert {1, 2, 3, 4, 0} <= set(np.unique(got))  # all four classes and the hole
    counts = {str(c): int((got == c).sum()) for c in range(1, 5)}
    assert result["labelled_pixels"] == counts
    assert fb.fractions and fb.fractions[-1] == pytest.approx(1.0)
    json.dumps(result)  # JSON-serialisable


def test_partial_overlap_crops_to_intersection_on_image_grid(scene, tmp_path):
    # A mask covering only the south-east part of the image.
    west, north, dx, dy, w, h = -73.825, 39.741, 0.0001, 0.0001, 300, 120
    data = np.full((h, w), 3, np.uint8)
    mask = write_raster(
        tmp_path / "part.tif",
        data,
        "EPSG:4326",
        rasterio.transform.Affine(dx, 0, west, 0, -dy, north),
    )
    out_img, out_mask = str(tmp_path / "img.tif"), str(tmp_path / "mask.tif")
    align_pair(scene["image"], out_img, out_mask, mask=mask)
    check_same_grid(out_img, out_mask)
    # The intersection, from pyproj: image bounds with the mask's bounds in UTM.
    mb = Transformer.from_crs("EPSG:4326", IMG_CRS, always_xy=True).transform_bounds(
        west, north - h * dy, west + w * dx, north, densify_pts=21
    )
    inter = (
        max(IMG_X0, mb[0]),
        max(IMG_Y0 - IMG_H * IMG_PX, mb[1]),
        min(IMG_X0 + IMG_W * IMG_PX, mb[2]),
        min(IMG_Y0, mb[3]),
    )
    with rasterio.open(out_img) as ds, rasterio.open(scene["image"]) as src:
        t = ds.transform
        left, bottom, right, top = ds.bounds
        # On the image's grid: whole pixels from the image origin.
        col0 = (t.c - IMG_X0) / IMG_PX
        row0 = (IMG_Y0 - t.f) / IMG_PX
        assert col0 == int(col0) and row0 == int(row0) and t.a == IMG_PX and t.e == -IMG_PX
        # Covers the intersection, exceeding it by less than a pixel on each side.
        assert left <= inter[0] < left + IMG_PX and right - IMG_PX < inter[2] <= right
        assert bottom <= inter[1] < bottom + IMG_PX and top - IMG_PX < inter[3] <= top
        assert ds.width < IMG_W and ds.height < IMG_H
        window = rasterio.windows.Window(int(col0), int(row0), ds.width, ds.height)
        assert np.array_equal(ds.read(), src.read(window=window))
    with rasterio.open(out_mask) as ds:
        got = ds.read(1)
        lon, lat = pixel_centres_lonlat(ds)
    inside = (lon > west) & (lon < west + w * dx) & (lat > north - h * dy) & (lat < north)
    margin = (np.abs(lon - west) * M_PER_DEG_LON > IMG_PX) & (
        np.abs(lat - north) * M_PER_DEG_LAT > IMG_PX
    )
    assert np.all(got[inside & margin] == 3)
    assert np.all(got[~inside & margin] == 0)


def test_reprojection_to_other_crs_snapped_grid_and_nearest_values(scene, tmp_path):
    out_img, out_mask = str(tmp_path / "img.tif"), str(tmp_path / "mask.tif")
    px = 12.0
    result = align_pair(
        scene["image"],
        out_img,
        out_mask,
        mask=scene["mask"],
        target_crs="EPSG:32617",
        pixel_size=px,
        resampling="nearest",
    )
    check_same_grid(out_img, out_mask)
    assert result["image_resampled"] is True
    with rasterio.open(out_img) as ds:
        assert ds.crs.to_epsg() == 32617
        t = ds.transform
        assert t.a == px and t.e == -px
        assert t.c / px == round(t.c / px) and t.f / px == round(t.f / px)
        assert ds.descriptions == DESCRIPTIONS
        assert ds.nodata == 0 and ds.dtypes[0] == "uint16"
        got = ds.read()
        cols, rows = np.meshgrid(np.arange(ds.width) + 0.5, np.arange(ds.height) + 0.5)
        x, y = t.c + t.a * cols, t.f + t.e * rows
    # Each output pixel centre, located in the source image (pyproj), gives its value.
    sx, sy = Transformer.from_crs("EPSG:32617", IMG_CRS, always_xy=True).transform(x, y)
    fc, fr = (sx - IMG_X0) / IMG_PX, (IMG_Y0 - sy) / IMG_PX
    inside = (fc > 0.25) & (fc < IMG_W - 0.25) & (fr > 0.25) & (fr < IMG_H - 0.25)
    away_from_edges = (np.abs(fc - np.round(fc)) > 0.2) & (np.abs(fr - np.round(fr)) > 0.2)
    sure = inside & away_from_edges
    assert sure.sum() > 1000
    src = image_data()
    expected = src[:, fr[sure].astype(int), fc[sure].astype(int)]
    assert np.array_equal(got[:, sure], expected)
    outside = (fc < -1) | (fc > IMG_W + 1) | (fr < -1) | (fr > IMG_H + 1)
    assert np.all(got[:, outside] == 0)  # nodata outside the image
    with rasterio.open(out_mask) as ds:
        mask = ds.read(1)
        lon, lat = pixel_centres_lonlat(ds)
        valid, invalid = image_validity(ds)
    # No label where the aligned image is invalid: off the image's footprint (the grid in
    # another CRS is tilted against it) or on its nodata pixel.
    classes = expected_mask_class(lon, lat)
    sure = (valid | invalid) & ~near_mask_boundary(lon, lat, px)
    expected = np.where(invalid, 0, classes)
    assert (invalid & sure & (classes > 0)).sum() > 1000
    assert np.array_equal(mask[sure], expected[sure])
    # Dropped: at least the sure labels under invalid pixels, at most all but the valid.
    lower = int((sure & invalid & (classes > 0)).sum())
    assert lower <= result["labels_dropped"] <= int((~valid).sum())


def test_bilinear_default_and_coarser_pixel_in_same_crs(scene, tmp_path):
    out_img, out_mask = str(tmp_path / "img.tif"), str(tmp_path / "mask.tif")
    result = align_pair(scene["image"], out_img, out_mask, mask=scene["mask"], pixel_size=30)
    check_same_grid(out_img, out_mask)
    with rasterio.open(out_img) as ds:
        t = ds.transform
        # Same CRS: the grid keeps the image's origin, with 30 m pixels.
        assert (t.a, t.e, t.c, t.f) == (30.0, -30.0, IMG_X0, IMG_Y0)
        assert (ds.width, ds.height) == (int(np.ceil(IMG_W / 3)), int(np.ceil(IMG_H / 3)))
    assert result["image_resampled"] is True


def test_integer_polygons_in_other_crs_multi_layer_geopackage(scene, tmp_path):
    a = (-73.830, 39.738, -73.825, 39.742)
    b = (-73.822, 39.739, -73.818, 39.7435)
    gpkg = write_vector(
        tmp_path / "labels.gpkg",
        [(rect(*a), 2), (rect(*b), 5)],
        "cls",
        "int",
        extra_point_layer=True,
    )
    out_img, out_mask = str(tmp_path / "img.tif"), str(tmp_path / "mask.tif")
    result = align_pair(
        scene["image"],
        out_img,
        out_mask,
        mask_vector=gpkg,
        vector_layer="classes",
        class_field="cls",
    )
    check_same_grid(out_img, out_mask)
    assert result["class_mapping"] is None
    with rasterio.open(out_mask) as ds:
        got = ds.read(1)
        lon, lat = pixel_centres_lonlat(ds)
        left, bottom, right, top = ds.bounds
    # Cropped to the polygons' extent (in UTM), within a pixel.
    pb = Transformer.from_crs("EPSG:4326", IMG_CRS, always_xy=True).transform_bounds(
        a[0], a[1], b[2], b[3], densify_pts=21
    )
    assert left <= pb[0] < left + IMG_PX and right - IMG_PX < pb[2] <= right
    assert bottom <= pb[1] < bottom + IMG_PX and top - IMG_PX < pb[3] <= top
    expected = np.zeros(got.shape, int)
    near = np.zeros(got.shape, bool)
    for (x0, y0, x1, y1), cls in ((a, 2), (b, 5)):
        expected[(lon > x0) & (lon < x1) & (lat > y0) & (lat < y1)] = cls
        for x in (x0, x1):
            near |= np.abs(lon - x) * M_PER_DEG_LON < IMG_PX
        for y in (y0, y1):
            near |= np.abs(lat - y) * M_PER_DEG_LAT < IMG_PX
    assert np.array_equal(got[~near], expected[~near])
    assert result["labelled_pixels"] == {"2": int((got == 2).sum()), "5": int((got == 5).sum())}
    # The image is the matching window of the original (kept grid).
    with rasterio.open(out_img) as ds:
        col0 = int(round((ds.transform.c - IMG_X0) / IMG_PX))
        row0 = int(round((IMG_Y0 - ds.transform.f) / IMG_PX))
        assert np.array_equal(
            ds.read(), image_data()[:, row0 : row0 + ds.height, col0 : col0 + ds.width]
        )
    # QGIS-style layer URI works too.
    out2 = str(tmp_path / "mask2.tif")
    align_pair(
        scene["image"],
        str(tmp_path / "img2.tif"),
        out2,
        mask_vector=gpkg + "|layername=classes",
        class_field="cls",
    )
    with rasterio.open(out2) as ds:
        assert np.array_equal(ds.read(1), got)


def test_long_polygon_edges_follow_their_curve_after_reprojection(tmp_path):
    """A parallel is a curve in UTM: a 2-degree edge at 60 N bows about 400 m (4 pixels)
    away from the straight chord between its projected corners."""
    crs, px = "EPSG:32635", 100.0
    box = (26.0, 60.0, 28.0, 60.5)
    corners = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform_bounds(
        *box, densify_pts=101
    )
    x0, y1 = corners[0] - 1000.0, corners[3] + 1000.0
    width = int((corners[2] + 1000.0 - x0) // px)
    height = int((y1 - (corners[1] - 1000.0)) // px)
    image = write_raster(
        tmp_path / "img.tif",
        np.ones((1, height, width), np.uint16),
        crs=crs,
        transform=from_origin(x0, y1, px, px),
    )
    gpkg = write_vector(tmp_path / "box.gpkg", [(rect(*box), 1)], "cls", "int")
    out_mask = str(tmp_path / "mask.tif")
    align_pair(image, str(tmp_path / "out.tif"), out_mask, mask_vector=gpkg, class_field="cls")
    with rasterio.open(out_mask) as ds:
        got = ds.read(1)
        lon, lat = pixel_centres_lonlat(ds)
    inside = (lon > box[0]) & (lon < box[2]) & (lat > box[1]) & (lat < box[3])
    # pixels whose centre is within one pixel of an edge may go either way
    m_lon = 111_320.0 * np.cos(np.radians(lat))
    near = np.zeros(got.shape, bool)
    for x in box[0::2]:
        near |= np.abs(lon - x) * m_lon < px
    for y in box[1::2]:
        near |= np.abs(lat - y) * 111_000.0 < px
    assert inside.sum() > 100_000
    assert np.array_equal(got[~near] == 1, inside[~near])


TEXT_POLYGONS = [
    (rect(-73.830, 39.738, -73.825, 39.742), "wetland"),
    (rect(-73.822, 39.739, -73.818, 39.7435), "water"),
    (rect(-73.828, 39.7365, -73.823, 39.7375), "forest"),
    (rect(-73.8215, 39.7365, -73.8185, 39.7378), "wetland"),
]


def expected_text_classes(lon, lat, ids):
    expected = np.zeros(lon.shape, int)
    near = np.zeros(lon.shape, bool)
    for wkt, name in TEXT_POLYGONS:
        nums = [
            float(v)
            for v in wkt.replace("POLYGON ((", "").replace("))", "").replace(",", " ").split()
        ]
        x0, y0, x1, y1 = nums[0], nums[1], nums[4], nums[5]
        expected[(lon > x0) & (lon < x1) & (lat > y0) & (lat < y1)] = ids.get(name, 0)
        for x in (x0, x1):
            near |= np.abs(lon - x) * M_PER_DEG_LON < IMG_PX
        for y in (y0, y1):
            near |= np.abs(lat - y) * M_PER_DEG_LAT < IMG_PX
    return expected, near


@pytest.mark.parametrize(
    "names,ids",
    [
        ("water, wetland", {"water": 1, "wetland": 2}),  # forest not listed -> 0
        (None, {"forest": 1, "water": 2, "wetland": 3}),  # sorted
    ],
)
def test_text_class_field_mapping(scene, tmp_path, names, ids):
    geojson = write_vector(
        tmp_path / "osm.geojson", TEXT_POLYGONS, "fclass", "text", driver="GeoJSON"
    )
    out_img, out_mask = str(tmp_path / "img.tif"), str(tmp_path / "mask.tif")
    fb = Recorder()
    result = align_pair(
        scene["image"],
        out_img,
        out_mask,
        mask_vector=geojson,
        class_field="fclass",
        class_names=names,
        feedback=fb,
    )
    assert result["class_mapping"] == ids
    assert result["class_names"] == sorted(ids, key=ids.get)
    with open(out_mask + ".classes.json", encoding="utf-8") as handle:
        doc = json.load(handle)
    assert {c["name"]: c["id"] for c in doc["classes"]} == ids
    assert result["classes_json"] == out_mask + ".classes.json"
    log = "\n".join(fb.lines)
    for name, i in ids.items():
        assert f"{i} = {name}" in log
    if names:
        assert "forest" in log and "unlabelled" in log
    with rasterio.open(out_mask) as ds:
        got = ds.read(1)
        lon, lat = pixel_centres_lonlat(ds)
    expected, near = expected_text_classes(lon, lat, ids)
    assert np.array_equal(got[~near], expected[~near])
    assert set(np.unique(got)) == {0} | set(ids.values())


def test_stale_class_json_removed_for_raster_mask(scene, tmp_path):
    out_img, out_mask = str(tmp_path / "img.tif"), str(tmp_path / "mask.tif")
    with open(out_mask + ".classes.json", "w") as handle:
        handle.write("{}")
    result = align_pair(scene["image"], out_img, out_mask, mask=scene["mask"])
    assert result["classes_json"] is None
    assert not os.path.exists(out_mask + ".classes.json")


# ----------------------------------------------------------------- bad inputs


def assert_nothing_written(folder, *paths):
    for path in paths:
        assert not os.path.exists(path), path
    assert not [n for n in os.listdir(folder) if ".partial-" in n]


def run_bad(scene, tmp_path, **kwargs):
    out_img, out_mask = str(tmp_path / "o_img.tif"), str(tmp_path / "o_mask.tif")
    kwargs.setdefault("image", scene["image"])
    with pytest.raises(CoreError) as info:
        align_pair(output_image=out_img, output_mask=out_mask, **kwargs)
    assert_nothing_written(tmp_path, out_img, out_mask, out_mask + ".classes.json")
    return str(info.value)


def test_no_overlap_gives_both_extents(scene, tmp_path):
    far = write_raster(
        tmp_path / "far.tif",
        np.ones((20, 20), np.uint8),
        "EPSG:4326",
        from_origin(10.0, 50.0, 0.001, 0.001),
    )
    message = run_bad(scene, tmp_path, mask=far)
    assert "do not overlap" in message
    assert "image covers" in message and "mask covers" in message and "EPSG:32618" in message


def test_no_overlap_polygons(scene, tmp_path):
    gpkg = write_vector(tmp_path / "far.gpkg", [(rect(10, 50, 10.01, 50.01), 1)], "cls", "int")
    assert "do not overlap" in run_bad(scene, tmp_path, mask_vector=gpkg, class_field="cls")


def test_missing_field_lists_fields(scene, tmp_path):
    gpkg = write_vector(
        tmp_path / "l.gpkg", [(rect(-73.83, 39.738, -73.825, 39.742), 1)], "cls", "int"
    )
    message = run_bad(scene, tmp_path, mask_vector=gpkg, class_field="klass")
    assert "klass" in message and "cls" in message


def test_layer_without_polygons(scene, tmp_path):
    gpkg = write_vector(tmp_path / "p.gpkg", [], "cls", "int", extra_point_layer=True)
    message = run_bad(scene, tmp_path, mask_vector=gpkg, vector_layer="points", class_field="cls")
    assert "no polygons" in message


def test_non_raster_files(scene, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a raster\n")
    message = run_bad(scene, tmp_path, image=str(text), mask=scene["mask"])
    assert "image" in message and "not a raster" in message
    message = run_bad(scene, tmp_path, mask=str(text))
    assert "mask" in message and "not a raster" in message
    message = run_bad(scene, tmp_path, mask=str(tmp_path / "missing.tif"))
    assert "does not exist" in message


def test_mask_or_image_without_crs(scene, tmp_path):
    nocrs = write_raster(
        tmp_path / "nocrs.tif",
        np.ones((20, 20), np.uint8),
        None,
        from_origin(IMG_X0, IMG_Y0, 10, 10),
    )
    message = run_bad(scene, tmp_path, mask=nocrs)
    assert "no coordinate reference system" in message and "Assign projection" in message
    message = run_bad(scene, tmp_path, image=nocrs, mask=scene["mask"])
    assert "image" in message and "gdal_edit -a_srs" in message


def test_output_is_input_and_mask_choice(scene, tmp_path):
    with pytest.raises(CoreError, match="also an input"):
        align_pair(scene["image"], scene["image"], str(tmp_path / "m.tif"), mask=scene["mask"])
    with pytest.raises(CoreError, match="also an input"):
        align_pair(scene["image"], str(tmp_path / "i.tif"), scene["mask"], mask=scene["mask"])
    alone = align_pair(scene["image"], str(tmp_path / "alone.tif"))  # no mask: the image alone
    assert alone["output_mask"] is None and alone["image_resampled"] is False
    assert "switch RPC on" in run_bad(scene, tmp_path, mask=scene["mask"], dem=scene["image"])
    assert "choose one" in run_bad(scene, tmp_path, mask=scene["mask"], mask_vector="x.gpkg")
    assert "RESAMPLING" in run_bad(scene, tmp_path, mask=scene["mask"], resampling="magic")
    assert "TARGET_CRS" in run_bad(scene, tmp_path, mask=scene["mask"], target_crs="EPSG:nope")


def test_rpc_without_rpcs(scene, tmp_path):
    message = run_bad(scene, tmp_path, mask=scene["mask"], rpc=True)
    assert "RPC" in message


def test_cancel_leaves_nothing(scene, tmp_path):
    out_img, out_mask = str(tmp_path / "img.tif"), str(tmp_path / "mask.tif")
    with pytest.raises(Canceled):
        align_pair(
            scene["image"],
            out_img,
            out_mask,
            mask=scene["mask"],
            target_crs="EPSG:3857",
            feedback=Recorder(cancel_after=0),
        )
    assert_nothing_written(tmp_path, out_img, out_mask)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_rpc_orthorectification(tmp_path):
    """An image with RPCs that map lon/lat linearly to pixels lands where they say."""
    from rasterio.rpc import RPC

    w, h = 120, 80
    lon0, lat0, span_lon, span_lat = -73.84, 39.75, 0.012, 0.008  # image covers this box
    # line = -P * h/2 + h/2 ; samp = L * w/2 + w/2 with P, L the normalised lat, lon.
    rpcs = RPC(
        height_off=0,
        height_scale=100,
        lat_off=lat0 - span_lat / 2,
        lat_scale=span_lat / 2,
        long_off=lon0 + span_lon / 2,
        long_scale=span_lon / 2,
        line_off=h / 2,
        line_scale=h / 2,
        samp_off=w / 2,
        samp_scale=w / 2,
        line_num_coeff=[0, 0, -1] + [0] * 17,
        line_den_coeff=[1] + [0] * 19,
        samp_num_coeff=[0, 1] + [0] * 18,
        samp_den_coeff=[1] + [0] * 19,
        err_bias=None,
        err_rand=None,
    )
    cols = np.arange(w)[None, :].repeat(h, 0)
    rows = np.arange(h)[:, None].repeat(w, 1)
    data = (rows * 1000 + cols + 1).astype(np.int32)
    path = tmp_path / "rpc.tif"
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="int32") as dst:
        dst.write(data[None])
        dst.rpcs = rpcs
    mask = write_raster(
        tmp_path / "m.tif",
        np.ones((100, 100), np.uint8),
        "EPSG:4326",
        from_origin(lon0 - 0.01, lat0 + 0.01, 0.0004, 0.0004),
    )
    out_img, out_mask = str(tmp_path / "img.tif"), str(tmp_path / "mask.tif")
    result = align_pair(
        str(path),
        out_img,
        out_mask,
        mask=mask,
        rpc=True,
        target_crs="EPSG:4326",
        pixel_size=span_lon / w / 2,
        resampling="nearest",
    )
    check_same_grid(out_img, out_mask)
    with rasterio.open(out_img) as ds:
        got = ds.read(1)
        lon, lat = pixel_centres_lonlat(ds)
    # RPC line/sample 0 is the centre of the first pixel (GDAL pixel coordinate 0.5).
    fc = (lon - lon0) / span_lon * w + 0.5
    fr = (lat0 - lat) / span_lat * h + 0.5
    sure = (
        (fc > 0.3)
        & (fc < w - 0.3)
        & (fr > 0.3)
        & (fr < h - 0.3)
        & (np.abs(fc - np.round(fc)) > 0.15)
        & (np.abs(fr - np.round(fr)) > 0.15)
    )
    assert sure.sum() > 1000
    expected = data[fr[sure].astype(int), fc[sure].astype(int)]
    assert np.mean(got[sure] == expected) > 0.99
    assert result["image_resampled"] is True


def test_default_pixel_size_when_reprojecting(scene, tmp_path):
    # Metres to metres: the image's 10 m is kept.
    result = align_pair(
        scene["image"],
        str(tmp_path / "a.tif"),
        str(tmp_path / "am.tif"),
        mask=scene["mask"],
        target_crs="EPSG:32617",
        class_names="a,b,c,d",
    )
    assert result["pixel_size"] == [10.0, 10.0]
    assert result["class_mapping"] == {"a": 1, "b": 2, "c": 3, "d": 4}
    with open(str(tmp_path / "am.tif") + ".classes.json") as handle:
        assert [c["name"] for c in json.load(handle)["classes"]] == ["a", "b", "c", "d"]
    # Metres to degrees: GDAL's suggestion (about 10 m in degrees), on a snapped grid.
    result = align_pair(
        scene["image"],
        str(tmp_path / "b.tif"),
        str(tmp_path / "bm.tif"),
        mask=scene["mask"],
        target_crs="EPSG:4326",
    )
    px, py = result["pixel_size"]
    assert px == py and 5e-5 < px < 2e-4
    check_same_grid(str(tmp_path / "b.tif"), str(tmp_path / "bm.tif"))
    with rasterio.open(str(tmp_path / "bm.tif")) as ds:
        got = ds.read(1)
        lon, lat = pixel_centres_lonlat(ds)
        assert abs(ds.transform.c / px - round(ds.transform.c / px)) < 1e-6
        valid, invalid = image_validity(ds)
    sure = (valid | invalid) & ~near_mask_boundary(lon, lat, 15)
    expected = np.where(invalid, 0, expected_mask_class(lon, lat))  # none off the image
    assert (sure & invalid).sum() > 100
    assert np.array_equal(got[sure], expected[sure])


def test_mask_values_nan_negative_wide_ids_and_decimals(scene, tmp_path):
    t = from_origin(IMG_X0 - 50, IMG_Y0 + 50, 5.0, 5.0)  # 5 m mask, same CRS, larger
    data = np.full((300, 400), 2.0, np.float32)
    data[:40] = np.nan  # rows of NaN and of -1: unlabelled
    data[40:80] = -1.0
    data[150:] = 300.0  # an id above 255: uint16 output
    mask = write_raster(tmp_path / "f.tif", data, IMG_CRS, t)
    out_mask = str(tmp_path / "m.tif")
    result = align_pair(scene["image"], str(tmp_path / "i.tif"), out_mask, mask=mask)
    with rasterio.open(out_mask) as ds:
        got = ds.read(1)
        assert ds.dtypes[0] == "uint16" and ds.nodata == 0
        y = ds.transform.f + ds.transform.e * (np.arange(ds.height) + 0.5)
    mask_row = ((IMG_Y0 + 50 - y) / 5.0).astype(int)
    expected = np.where(mask_row < 80, 0, np.where(mask_row < 150, 2, 300))
    assert np.array_equal(got, np.repeat(expected[:, None], got.shape[1], 1))
    assert set(result["labelled_pixels"]) == {"2", "300"}
    data[100:120] = 2.5
    bad = write_raster(tmp_path / "d.tif", data, IMG_CRS, t)
    assert "decimal" in run_bad(scene, tmp_path, mask=bad)
