/*  =========================================================================
    geo.c - distances on the Earth and the cell grid of the geo index
    =========================================================================
*/

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "geo.h"

#define GEO_ROWS        ((uint32_t) (180.0 / GEO_CELL_DEG + 0.5))
#define DEG             (M_PI / 180.0)
//  Slack added to every bound of a cover, in degrees (about 1 cm), so that
//  rounding in the trigonometry can only widen a cover, never narrow it.
#define GEO_SLACK_DEG   1e-7

double
geo_distance_m (double lat1, double lon1, double lat2, double lon2)
{
    double dlat = (lat2 - lat1) * DEG, dlon = (lon2 - lon1) * DEG;
    double a = sin (dlat / 2) * sin (dlat / 2)
             + cos (lat1 * DEG) * cos (lat2 * DEG) * sin (dlon / 2) * sin (dlon / 2);
    if (a > 1)
        a = 1;
    return 2 * GEO_EARTH_RADIUS_M * asin (sqrt (a));
}

static uint32_t
s_row_of (double latitude)
{
    double row = floor ((latitude + 90.0) / GEO_CELL_DEG);
    if (row < 0)
        return 0;
    if (row >= GEO_ROWS)
        return GEO_ROWS - 1;        //  the north pole belongs to the last row
    return (uint32_t) row;
}

//  Columns of a row: as many as keep its cells GEO_CELL_DEG wide at the
//  row's edge nearest the equator, where the row is widest.
static uint32_t
s_columns (uint32_t row)
{
    double south = -90.0 + row * GEO_CELL_DEG, north = south + GEO_CELL_DEG;
    double edge = (south <= 0 && north >= 0)? 0: fmin (fabs (south), fabs (north));
    double columns = floor (360.0 * cos (edge * DEG) / GEO_CELL_DEG);
    return columns < 1? 1: (uint32_t) columns;
}

static uint32_t
s_column_of (double longitude, uint32_t columns)
{
    double column = floor ((longitude + 180.0) / 360.0 * columns);
    if (column < 0)
        return 0;
    if (column >= columns)
        return 0;                   //  180 is -180
    return (uint32_t) column;
}

geo_cell_t
geo_cell_of (double latitude, double longitude)
{
    uint32_t row = s_row_of (latitude);
    return (geo_cell_t) row << 32 | s_column_of (longitude, s_columns (row));
}

//  Append the cells first..last of a row to the cover.
static size_t
s_emit (geo_cell_t *cells, size_t max, size_t count, uint32_t row, int64_t first, int64_t last)
{
    for (int64_t column = first; column <= last; column++, count++)
        if (count < max)
            cells [count] = (geo_cell_t) row << 32 | (uint32_t) column;
    return count;
}

size_t
geo_cover (double latitude, double longitude, double radius_m, geo_cell_t *cells, size_t max)
{
    assert (cells || max == 0);
    assert (radius_m >= 0 && radius_m <= 1000000);
    //  Every point of the cap lies within delta of the centre's latitude, and,
    //  unless the cap holds a pole, within asin(sin delta / cos lat) of its
    //  longitude: the cap's widest extent, used for every row it touches.
    double delta = radius_m / GEO_EARTH_RADIUS_M;
    double delta_deg = delta / DEG;
    double south = latitude - delta_deg - GEO_SLACK_DEG;
    double north = latitude + delta_deg + GEO_SLACK_DEG;
    bool every_longitude = south <= -90 || north >= 90;
    double half_width = 180;
    if (!every_longitude) {
        double ratio = sin (delta) / cos (latitude * DEG);
        if (ratio >= 1)
            every_longitude = true;
        else
            half_width = asin (ratio) / DEG + GEO_SLACK_DEG;
        if (half_width >= 180)
            every_longitude = true;
    }
    size_t count = 0;
    for (uint32_t row = s_row_of (south); row <= s_row_of (north); row++) {
        int64_t columns = s_columns (row);
        if (every_longitude) {
            count = s_emit (cells, max, count, row, 0, columns - 1);
            continue;
        }
        int64_t first = (int64_t) floor ((longitude - half_width + 180.0) / 360.0 * columns);
        int64_t last = (int64_t) floor ((longitude + half_width + 180.0) / 360.0 * columns);
        if (last - first + 1 >= columns)
            count = s_emit (cells, max, count, row, 0, columns - 1);
        else
        if (first < 0)              //  crosses -180: two runs, lower one first
            count = s_emit (cells, max, s_emit (cells, max, count, row, 0, last),
                            row, first + columns, columns - 1);
        else
        if (last >= columns)        //  crosses +180
            count = s_emit (cells, max, s_emit (cells, max, count, row, 0, last - columns),
                            row, first, columns - 1);
        else
            count = s_emit (cells, max, count, row, first, last);
    }
    return count;
}

//  ---------------------------------------------------------------------------
//  Self-test

//  The point at distance_m and bearing (degrees) from a start point.
static void
s_destination (double lat, double lon, double bearing, double distance_m,
               double *lat2, double *lon2)
{
    double d = distance_m / GEO_EARTH_RADIUS_M, phi = lat * DEG, theta = bearing * DEG;
    double phi2 = asin (sin (phi) * cos (d) + cos (phi) * sin (d) * cos (theta));
    double lambda2 = lon * DEG + atan2 (sin (theta) * sin (d) * cos (phi),
                                        cos (d) - sin (phi) * sin (phi2));
    *lat2 = phi2 / DEG;
    *lon2 = fmod (lambda2 / DEG + 540.0, 360.0) - 180.0;
}

//  A deterministic PRNG (xorshift64*), so a failure can be replayed.
static double
s_random (uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (double) ((*state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static bool
s_contains (const geo_cell_t *cells, size_t count, geo_cell_t cell)
{
    size_t low = 0, high = count;
    while (low < high) {
        size_t middle = (low + high) / 2;
        if (cells [middle] < cell)
            low = middle + 1;
        else
            high = middle;
    }
    return low < count && cells [low] == cell;
}

void
geo_test (bool verbose)
{
    //  Known distances.
    double paris_london = geo_distance_m (48.8566, 2.3522, 51.5074, -0.1278);
    assert (fabs (paris_london - 343500) < 343500 * 0.005);
    assert (fabs (geo_distance_m (0, 0, 1, 0) - 111195) < 10);
    assert (geo_distance_m (45, 7, 45, 7) == 0);
    assert (fabs (geo_distance_m (0, 0, 0, 180) - M_PI * GEO_EARTH_RADIUS_M) < 1);
    assert (fabs (geo_distance_m (10, 179.9995, 10, -179.9995) - 109.5) < 1);
    assert (geo_cell_of (12.3, 180) == geo_cell_of (12.3, -180));
    assert (geo_cell_of (90, 0) >> 32 == geo_cell_of (90, 123) >> 32);   //  the last row

    //  The cover holds every point of the circle: sampled, against many
    //  centres including the poles and the 180th meridian.
    size_t max = 100000;
    geo_cell_t *cells = malloc (max * sizeof *cells);
    assert (cells);
    uint64_t state = 0x9e3779b97f4a7c15ULL;
    size_t largest_500m = 0;
    for (int round = 0; round < 3000; round++) {
        double lat, lon;
        switch (round % 6) {
            case 0:  lat = 89.9 + s_random (&state) * 0.1; break;     //  north pole
            case 1:  lat = -89.9 - s_random (&state) * 0.1; break;    //  south pole
            case 2:  lat = s_random (&state) * 170 - 85; lon = 0; break;
            default: lat = s_random (&state) * 180 - 90; break;
        }
        lon = s_random (&state) * 360 - 180;
        if (round % 6 == 2)
            lon = s_random (&state) < 0.5? 179.999 + s_random (&state) * 0.001
                                         : -179.999 - s_random (&state) * 0.001;
        if (round == 10)
            lat = 90;
        if (round == 11)
            lat = -90;
        double radius = round % 3 == 0? 500: s_random (&state) * 50000;
        size_t count = geo_cover (lat, lon, radius, cells, max);
        assert (count <= max);
        for (size_t i = 1; i < count; i++)
            assert (cells [i - 1] < cells [i]);         //  ascending, unique
        if (radius == 500 && fabs (lat) < 60 && count > largest_500m)
            largest_500m = count;
        for (int sample = 0; sample < 200; sample++) {
            double lat2, lon2;
            s_destination (lat, lon, s_random (&state) * 360,
                           radius * sqrt (s_random (&state)), &lat2, &lon2);
            if (!s_contains (cells, count, geo_cell_of (lat2, lon2))) {
                fprintf (stderr, "geo_cover (%.9f, %.9f, %.1f) misses (%.9f, %.9f)\n",
                         lat, lon, radius, lat2, lon2);
                assert (false);
            }
        }
        //  The rim itself, all the way round.
        for (int bearing = 0; bearing < 360; bearing += 5) {
            double lat2, lon2;
            s_destination (lat, lon, bearing, radius, &lat2, &lon2);
            assert (s_contains (cells, count, geo_cell_of (lat2, lon2)));
        }
    }
    if (verbose)
        printf ("largest cover of a 500 m circle below 60 degrees: %zu cells\n", largest_500m);
    assert (largest_500m > 0 && largest_500m <= 16);
    //  A cover is small where it should be, and bounded everywhere.
    assert (geo_cover (48.85, 2.35, 500, cells, max) <= 9);
    assert (geo_cover (89.999, 0, 50000, cells, max) < 60000);
    assert (geo_cover (0.0012, 0.0012, 0, cells, max) == 1);    //  inside one cell
    assert (geo_cover (0, 0, 0, cells, max) == 4);              //  on a corner
    free (cells);
}
