"""Word lists for realistic synthetic rows. Personal data is invented (names are common given and family names,
emails use example.com, phone numbers the 555-01xx fiction range)."""

from __future__ import annotations

FIRST_NAMES = (
    "Alice", "Bruno", "Carla", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kofi", "Laura",
    "Mateo", "Nadia", "Oscar", "Priya", "Quentin", "Rosa", "Samuel", "Tara", "Umar", "Vera", "Wei", "Ximena",
    "Yusuf", "Zoe", "Amir", "Beatriz", "Chen", "Daniela", "Emil", "Fatima", "Gabriel", "Hannah", "Ivan", "Julia",
    "Kenji", "Lucia", "Marco", "Nina", "Olga", "Pablo", "Sofia", "Thomas", "Anna", "Leo", "Mia", "Noah",
)
LAST_NAMES = (
    "Smith", "Garcia", "Muller", "Rossi", "Kim", "Nakamura", "Silva", "Novak", "Okafor", "Jensen", "Dubois",
    "Kowalski", "Haddad", "Patel", "Costa", "Lindqvist", "Moreau", "Schmidt", "Tanaka", "Ivanova", "Brown",
    "Wilson", "Lopez", "Fischer", "Romano", "Yilmaz", "Andersen", "Petrov", "Nguyen", "Hughes", "Martin", "Weber",
    "Ferrari", "Santos", "Olsen", "Clarke", "Reyes", "Bauer", "Conti", "Sato",
)
CITIES = (
    ("Berlin", "Germany"), ("Munich", "Germany"), ("Hamburg", "Germany"), ("Paris", "France"), ("Lyon", "France"),
    ("Madrid", "Spain"), ("Barcelona", "Spain"), ("Rome", "Italy"), ("Milan", "Italy"), ("London", "UK"),
    ("Leeds", "UK"), ("Manchester", "UK"), ("Dublin", "Ireland"), ("Lisbon", "Portugal"), ("Amsterdam", "Netherlands"),
    ("Vienna", "Austria"), ("Zurich", "Switzerland"), ("Stockholm", "Sweden"), ("Oslo", "Norway"), ("Warsaw", "Poland"),
    ("Prague", "Czechia"), ("New York", "USA"), ("Chicago", "USA"), ("Miami", "USA"), ("Seattle", "USA"),
    ("Boston", "USA"), ("Toronto", "Canada"), ("Vancouver", "Canada"), ("Mexico City", "Mexico"),
    ("Sao Paulo", "Brazil"), ("Buenos Aires", "Argentina"), ("Tokyo", "Japan"), ("Osaka", "Japan"),
    ("Seoul", "South Korea"), ("Singapore", "Singapore"), ("Sydney", "Australia"), ("Melbourne", "Australia"),
    ("Mumbai", "India"), ("Delhi", "India"), ("Cairo", "Egypt"), ("Nairobi", "Kenya"), ("Lagos", "Nigeria"),
    ("Istanbul", "Turkey"), ("Dubai", "UAE"),
)
NATIONALITIES = (
    "German", "French", "Spanish", "Italian", "British", "Irish", "Portuguese", "Dutch", "Swedish", "Polish",
    "American", "Canadian", "Mexican", "Brazilian", "Argentine", "Japanese", "Korean", "Indian", "Australian",
    "Kenyan", "Nigerian", "Egyptian", "Turkish",
)
AIRPORTS = (
    ("BER", "Berlin Brandenburg", "Berlin", "Germany"), ("MUC", "Munich Airport", "Munich", "Germany"),
    ("CDG", "Charles de Gaulle", "Paris", "France"), ("MAD", "Madrid Barajas", "Madrid", "Spain"),
    ("FCO", "Rome Fiumicino", "Rome", "Italy"), ("LHR", "London Heathrow", "London", "UK"),
    ("DUB", "Dublin Airport", "Dublin", "Ireland"), ("AMS", "Amsterdam Schiphol", "Amsterdam", "Netherlands"),
    ("JFK", "John F. Kennedy", "New York", "USA"), ("ORD", "O'Hare International", "Chicago", "USA"),
    ("MIA", "Miami International", "Miami", "USA"), ("YYZ", "Toronto Pearson", "Toronto", "Canada"),
    ("GRU", "Sao Paulo Guarulhos", "Sao Paulo", "Brazil"), ("HND", "Tokyo Haneda", "Tokyo", "Japan"),
    ("ICN", "Seoul Incheon", "Seoul", "South Korea"), ("SIN", "Singapore Changi", "Singapore", "Singapore"),
    ("SYD", "Sydney Kingsford Smith", "Sydney", "Australia"), ("BOM", "Mumbai Chhatrapati Shivaji", "Mumbai", "India"),
    ("DXB", "Dubai International", "Dubai", "UAE"), ("IST", "Istanbul Airport", "Istanbul", "Turkey"),
)
AIRLINE_CODES = ("BA", "LH", "AF", "IB", "AZ", "KL", "DL", "UA", "AA", "JL", "SQ", "QF", "EK", "TK")
STREETS = ("Oak Street", "Maple Avenue", "Harbor Road", "Park Lane", "Elm Street", "Mill Road", "Station Road",
           "Cedar Drive", "Lake View", "Hill Street", "River Walk", "King Street", "Church Lane", "Garden Row")
BOOK_TITLES = (
    "The Silent Harbor", "Dune", "Emma", "The Glass Garden", "Northern Lights", "A Winter Journey", "The Last Orchard",
    "Echoes of Rome", "The Clockmaker", "Salt and Stone", "Beyond the River", "The Quiet Year", "Paper Moons",
    "The Long Road Home", "Iron Hearts", "The Map of Days", "City of Ash", "The Lantern Keeper", "Red Horizon",
    "The Hidden Door",
)
ALBUM_TITLES = (
    "Midnight Drive", "Golden Hour", "Static Dreams", "Blue Season", "Wildfire", "Paper Planes", "Neon Skies",
    "Low Tide", "Echo Chamber", "Northbound", "Velvet Rain", "Second Nature", "Open Roads", "Glass Houses",
)
TRACK_TITLES = (
    "Falling Slowly", "City Lights", "Run Away", "Summer Rain", "Heartbeat", "Ocean Eyes", "Firefly", "Home Again",
    "Gravity", "Starlight", "Afterglow", "Wanderer", "Silver Lining", "Brave", "Daydream", "Thunder Road",
)
MOVIE_TITLES = (
    "The Last Signal", "Night Train", "Crimson Peak Road", "Lost in Lisbon", "The Iron Bridge", "Silent Waters",
    "Tomorrow's Edge", "The Glass Key", "Desert Bloom", "Echo Park", "Northern Star", "The Long Game",
)
COURSE_TITLES = (
    "Linear Algebra", "Calculus I", "Organic Chemistry", "Data Structures", "Machine Learning", "World History",
    "Microeconomics", "Quantum Mechanics", "Statistics", "Operating Systems", "Cell Biology", "Databases",
    "Modern Poetry", "Thermodynamics", "Philosophy of Mind", "Discrete Mathematics",
)
JOB_TITLES = ("Engineer", "Analyst", "Manager", "Designer", "Accountant", "Consultant", "Developer", "Technician",
              "Coordinator", "Director", "Scientist", "Assistant")
PRODUCT_NAMES = (
    "Wireless Mouse", "USB-C Cable", "Laptop Stand", "Mechanical Keyboard", "Noise Cancelling Headphones",
    "Water Bottle", "Desk Lamp", "Office Chair", "Phone Case", "Backpack", "Coffee Grinder", "Yoga Mat",
    "Running Shoes", "Bluetooth Speaker", "Smart Watch", "Notebook", "Monitor", "Webcam", "Tea Kettle",
    "Travel Mug", "Power Bank", "Sunglasses",
)
PRODUCT_CATEGORIES = ("Electronics", "Books", "Home", "Sports", "Toys", "Clothing", "Kitchen", "Office", "Garden",
                      "Beauty")
DISH_NAMES = ("Tomato Soup", "Margherita Pizza", "Caesar Salad", "Tiramisu", "Pad Thai", "Beef Burger",
              "Mushroom Risotto", "Fish Tacos", "Lentil Curry", "Cheesecake", "Minestrone", "Grilled Salmon",
              "Falafel Wrap", "Chocolate Mousse", "Ramen", "Greek Salad")
DISH_CATEGORIES = ("starter", "soup", "main", "dessert", "salad", "side", "drink")
GENRES_BOOK = ("Mystery", "Fantasy", "Science Fiction", "Romance", "Horror", "Biography", "History", "Thriller",
               "Poetry", "Drama")
GENRES_MUSIC = ("Rock", "Pop", "Jazz", "Hip Hop", "Classical", "Electronic", "Folk", "Blues", "Metal", "Reggae")
GENRES_MOVIE = ("Drama", "Comedy", "Action", "Horror", "Documentary", "Animation", "Thriller", "Romance")
STATUSES_ORDER = ("pending", "shipped", "delivered", "cancelled", "returned")
STATUSES_APPOINTMENT = ("scheduled", "completed", "cancelled", "no-show")
STATUSES_PROJECT = ("active", "completed", "on hold", "planned")
STATUSES_GENERIC = ("active", "inactive", "pending", "closed")
SEAT_CLASSES = ("economy", "premium economy", "business", "first")
GRADES = ("A", "B", "C", "D", "F")
SEMESTERS = ("Fall 2023", "Spring 2024", "Fall 2024", "Spring 2025")
SPECIALTIES = ("Cardiology", "Neurology", "Oncology", "Pediatrics", "Dermatology", "Orthopedics", "Radiology",
               "Psychiatry")
INSURERS = ("Allianz", "AXA", "Aetna", "Cigna", "Bupa", "MetLife", "none")
DEPARTMENTS_MEDICAL = ("Cardiology", "Neurology", "Oncology", "Pediatrics", "Emergency", "Radiology", "Surgery")
DEPARTMENTS_ACADEMIC = ("Mathematics", "Physics", "Chemistry", "Biology", "History", "Computer Science",
                        "Economics", "Philosophy", "Literature")
DEPARTMENTS_CORPORATE = ("Engineering", "Marketing", "Sales", "Finance", "Human Resources", "Legal", "Operations",
                         "Research", "Support")
BUILDINGS = ("North Hall", "Science Center", "Main Building", "West Wing", "Library Annex", "Innovation Hub")
PLAYER_POSITIONS = ("Goalkeeper", "Defender", "Midfielder", "Forward")
STAFF_ROLES = ("chef", "waiter", "manager", "cashier", "cleaner", "host")
PROJECT_ROLES = ("lead", "developer", "reviewer", "tester", "analyst")
PROPERTY_TYPES = ("house", "condo", "apartment", "townhouse", "studio")
TEAM_SUFFIXES = ("FC", "United", "Rovers", "City", "Athletic", "Wanderers")
PLACE_PREFIXES = ("Eastbrook", "Westfield", "Northgate", "Southport", "Riverside", "Lakeside", "Hillcrest",
                  "Oakridge", "Brookvale", "Stonebridge", "Fairhaven", "Kingsley")
RESTAURANT_NAMES = ("The Golden Spoon", "Blue Olive", "Casa Verde", "The Hungry Fox", "Saffron House", "Little Tokyo",
                    "Trattoria Roma", "The Green Fork", "Bistro 21", "Harbor Grill", "Spice Route", "Le Petit Cafe")
PROJECT_NAMES = ("Phoenix", "Atlas", "Orion", "Nimbus", "Horizon", "Falcon", "Aurora", "Titan", "Zephyr", "Apollo",
                 "Mercury", "Polaris")
COMPANY_NAMES = ("Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Stark Industries", "Wayne Enterprises",
                 "Hooli", "Vandelay Imports", "Soylent", "Cyberdyne", "Tyrell", "Wonka Industries")
BRANDS = ("Northwind", "Contoso", "Fabrikam", "Adatum", "Litware", "Tailspin", "Proseware", "Lucerne")
COLORS = ("red", "blue", "green", "black", "white", "silver", "yellow", "purple")
LANGUAGES = ("English", "Spanish", "French", "German", "Japanese", "Portuguese", "Italian", "Mandarin")
GENDERS = ("female", "male", "other")
LEVELS = ("beginner", "intermediate", "advanced")
PAYMENT_METHODS = ("card", "cash", "paypal", "bank transfer")
DESCRIPTIONS = ("standard", "premium", "limited edition", "refurbished", "basic", "deluxe")
WORD_SYLLABLES = ("ka", "lo", "mer", "ta", "vin", "sa", "ro", "del", "na", "ri", "tor", "ben", "li", "cam", "po")
PERSON_TABLE_WORDS = (
    "customer", "employee", "student", "author", "member", "patient", "doctor", "passenger", "player", "staff",
    "agent", "client", "user", "teacher", "instructor", "manager", "driver", "person", "people", "guest", "worker",
    "artist", "singer", "actor", "director", "writer", "reviewer", "owner", "buyer", "seller", "coach", "nurse",
    "volunteer", "participant", "athlete", "musician", "professor", "candidate", "applicant", "tenant", "visitor",
)
