"""Pools of plain, common replacements, written for this project, and a generator of English-looking
surnames for when a pool runs out. Deliberately unremarkable: an alternative should carry no
story of its own."""

from __future__ import annotations

from itertools import product

MALE_GIVEN = """
Aaron Adam Alan Albert Alfred Andrew Anthony Arnold Barry Basil Ben Bernard Bill Bob Brian Bruce Carl Charlie Chris
Clive Colin Craig Dan Daniel Dave David Dennis Derek Dominic Donald Doug Duncan Eddie Edgar Edwin Eric Ernest Eugene
Felix Frank Fred Gary Gavin Geoff Gerald Gilbert Glen Gordon Graham Greg Harold Harry Harvey Herbert Howard Hugh Ian
Ivan Jack Jake Jason Jeff Jeremy Jim Joe Joel Jon Jordan Josh Keith Ken Kevin Kyle Lance Larry Leo Leon Leonard Leslie
Lewis Luke Malcolm Mark Martin Matt Max Miles Mike Morris Neil Nick Nigel Noel Norman Oliver Oscar Owen Pat Paul
Percy Phil Ralph Ray Rex Rick Rob Rodney Roger Ron Ross Roy Russell Ryan Sam Scott Sean Seth Shane Stan Steve Stuart
Ted Terry Tim Toby Tom Tony Trevor Victor Vince Wade Wallace Walter Warren Wayne Wes Will Zack Abe Alec Alvin Archie
Arthur Austin Barney Bert Blake Brett Bryan Calvin Cecil Clark Claude Clifford Cyril Dale Dean Desmond Doyle Earl
Elliot Ellis Elmer Emmett Ernie Floyd Francis Gene Glenn Grant Hal Hank Homer Horace Irving Jay Jerry Jesse Kurt
Lloyd Lyle Marvin Maurice Melvin Milton Monty Murray Nathan Ned Ollie Otis Perry Quentin Reg Rupert Sidney Simon
Spencer Stanley Ward Wilbur Willis
""".split()

FEMALE_GIVEN = """
Abigail Ada Agnes Alice Amanda Amber Amy Angela Anna Anne Audrey Barbara Beatrice Bella Beth Betty Brenda Bridget
Carol Caroline Carrie Cathy Celia Charlotte Chloe Claire Clara Daisy Dawn Deborah Denise Diana Dora Doris Dorothy
Edith Eileen Elaine Eleanor Ella Ellen Elsie Emily Emma Erica Esther Eva Eve Fay Fiona Flora Frances Gail Gemma
Georgia Gillian Gina Grace Gwen Hannah Harriet Hazel Heather Helen Holly Ida Irene Iris Ivy Jane Janet Jean Jenny
Jessica Jill Joan Jodie Josie Joy Judith Julia June Karen Kate Kathleen Kim Laura Leah Lena Lilian Lily Linda Lisa
Lois Lorna Louise Lucy Lydia Mabel Maggie Mandy Margaret Maria Marion Martha Mary Maud Maureen Megan Mia Millie Molly
Monica Nancy Nell Nina Nora Olive Olivia Pam Patricia Paula Pauline Peggy Penny Phoebe Polly Rachel Rita Rosa Rose
Ruby Ruth Sally Sandra Sarah Sheila Shirley Sophie Stella Sue Susan Sylvia Tess Thelma Tina Una Vera Vicky Violet
Wendy Winnie Yvonne Zoe
""".split()

SURNAMES = """
Abbott Acton Ainsley Allard Ambrose Archer Ashby Ashton Atwood Bailey Bancroft Barlow Barnes Bartlett Baxter
Beckett Bell Benson Bentley Blackwell Blythe Booth Bowen Bradford Bramley Brent Brewer Brooks Burgess Burton
Calder Carlisle Carver Chandler Chapman Clayton Cobb Collier Colton Conway Cooper Crane Crawford Croft Dalton
Darby Dawson Denton Dixon Dobson Draper Dudley Dunn Easton Elliott Emery Everett Fairfax Farley Fenton Fielding
Finch Fleming Fletcher Ford Fowler Foyle Garner Garrett Gibbs Goddard Gould Granger Graves Hadley Hale Halsey
Hammond Harding Harlow Harper Hartley Hayward Heath Hendry Hewitt Hobbs Holland Horton Howell Hughes Hurst Ingram
Jarvis Jennings Kemp Kendall Kerr Kirby Knight Lambert Lancaster Landon Larkin Lawson Layton Leland Lister Lowe
Lyle Marsh Maxwell Mayhew Meadows Mercer Merritt Milford Mills Monroe Morley Neville Newell Norris Oakley Osborne
Palmer Parsons Payne Pearce Pembroke Penrose Perkins Pickering Pollard Potter Pratt Preston Quinn Radcliffe Ramsey
Rawlings Redding Reeves Ridley Rowe Rowland Rutledge Sadler Sanders Sawyer Sexton Shaw Shelby Sherwood Shipley
Slater Sloane Spalding Stafford Stokes Stratton Sutton Talbot Tanner Thornton Tindall Tolliver Townsend Tucker
Upton Vaughan Wade Walker Walsh Warburton Webb Weston Whitaker Whitley Wilcox Winslow Woodward Wyatt Yardley Yates
""".split()

PLACES = """
Ashcombe Ashwell Barnford Bellhaven Birchley Bramford Brookfield Burnside Castleford Cedarvale Clearwater Colbridge
Copperfield Crestwood Dunmore Eastwick Elmstead Fairhaven Fernley Foxley Glenbrook Greenhill Hallam Harrowgate
Hazelmere Highbury Hollins Kingsford Lakeby Larchmont Linwood Marlow Meadowbrook Merton Millbrook Northam Oakhurst
Oldbury Pinecrest Redbrook Ridgeway Riverton Rosewood Sandford Silverdale Southwell Stonebridge Thornbury Westfield
Whitmore Willowby Windham Woodbury
""".split()

OBJECTS = """
lantern parcel satchel ledger compass kettle walking-stick pocket-knife notebook spyglass tinderbox umbrella
briefcase candlestick blanket basket bucket bottle whistle ladder shovel hammer bell rope clock mirror glove
cushion pillow teapot saucer spoon ribbon thimble pencil button buckle wallet trunk crate barrel wagon carriage
""".split()

_ONSETS = """Ash Brad Carl Dal Ell Fen Gar Hal Kel Lang Mar Nor Pem Ral Stan Thorn Wel Whit Brom Cal Dun Har Mel Wes
Ald Bar Ber Brack Cam Cran Dray Elder Farn Gil Hart Holl Kin Lind Lock Mor Pen Red Rock Sel Sher Tam Ter Wick""".split()
_LINKS = ["", "en", "ing", "er"]
_ENDINGS = "ford ley ton wick by worth field more well ham bury combe stead brook wood dale hurst gate don mere".split()


def generated_names() -> list[str]:
    """English-looking surnames made from common parts ("Ashford", "Brackenhurst", ...), in a fixed
    order: a few thousand, so extraction never runs out."""
    names = []
    for link, ending, onset in product(_LINKS, _ENDINGS, _ONSETS):
        joint = (onset + link)[-1] + ending[0]
        if joint[0] != joint[1] and not (link == "" and onset.endswith("el") and ending.startswith("we")):
            names.append(onset + link + ending)
    return names
